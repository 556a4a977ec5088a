"""peft-explorer: watch parameter-efficient fine-tuning happen, live."""

__version__ = "0.1.0"
