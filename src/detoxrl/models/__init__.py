"""detoxrl.models"""
