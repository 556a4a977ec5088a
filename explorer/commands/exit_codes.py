"""The command line's exit codes (one definition: cli.py and the commands use these)."""

OK = 0
INTERNAL = 1  # a bug of ours: "internal error", the traceback with --debug or PEFT_EXPLORER_DEBUG=1
INPUT = 2  # a bad flag, file or output path, said in one line
FAULT = 3  # training stopped on a fault (a diverging run); the recording keeps the last good state
INTERRUPTED = 130

HELP = (
    "exit codes: 0 done, 1 internal error (traceback: --debug first, or PEFT_EXPLORER_DEBUG=1), "
    "2 bad input or output path, 3 training stopped on a fault, 130 interrupted"
)
