"""detoxrl.constitution"""
