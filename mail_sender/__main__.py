from mail_sender.main import main

main()
