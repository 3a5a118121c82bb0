from attnlm.cli import main

main()
