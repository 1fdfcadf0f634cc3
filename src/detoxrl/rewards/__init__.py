"""detoxrl.rewards"""
