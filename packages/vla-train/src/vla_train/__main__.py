from vla_train.cli import main

main()
