"""detoxrl.testbed"""
