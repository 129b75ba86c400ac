from petition_api.main import main

main()
