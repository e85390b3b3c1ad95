from tta_energy.cli.main import main

if __name__ == "__main__":
    main()
