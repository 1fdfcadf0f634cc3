"""detoxrl.curriculum"""
