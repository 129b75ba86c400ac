from counter_worker.main import main

main()
