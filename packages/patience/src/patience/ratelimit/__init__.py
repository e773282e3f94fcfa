"""Rate limiting shared by the daemon, the tools' local fallback and `rpr rate-limit`.

algorithms: the limiters (sliding-window log a.k.a. "diophantine", fixed window, GCRA) as
pure state machines with an injected clock. schedule_check: the protocol-1.0 "can these
planned attempts fit" decision of the Go tool. resources: resource ids and their detection
from a command line. gate: waiting for a token inside one process. Nothing is imported
here, so `import patience.ratelimit.x` stays cheap.
"""
