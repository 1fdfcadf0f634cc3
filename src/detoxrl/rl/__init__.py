"""detoxrl.rl"""
