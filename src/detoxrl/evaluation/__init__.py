"""detoxrl.evaluation"""
