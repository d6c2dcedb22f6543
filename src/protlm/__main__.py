from protlm.cli import main

main()
