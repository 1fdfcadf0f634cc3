from detoxrl.cli import main

main()
