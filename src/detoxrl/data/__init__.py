"""detoxrl.data"""
