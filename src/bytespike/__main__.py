from bytespike.cli import main

main()
