from mailflow.cli import main

# Guarded: parse worker processes import the main module when they start.
if __name__ == "__main__":
    main()
