"""``python -m kshot`` (also what ``accelerate launch -m kshot`` runs)."""

from .cli.main import main

if __name__ == "__main__":
    main()
