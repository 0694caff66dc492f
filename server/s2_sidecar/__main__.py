from s2_sidecar.cli import main

main()
