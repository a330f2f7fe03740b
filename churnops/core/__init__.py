"""Foundation: the state folder and environment (``settings``), the one error type and the exit
codes (``errors``), file locks (``locking``). Standard library only; every other package may
import it, it imports none of them."""
