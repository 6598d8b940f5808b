"""Offline voice providers: demo and test equipment, not for production.

They need no key and no network, so the tutor example, the demo call and the tests run on
any machine: streaming pocketsphinx for speech recognition (in a child process, it holds
the GIL), a deterministic template LLM that scripts the tutor's answers and makes real
tool calls, and Festival for speech synthesis. Install with the `offline` extra
(pocketsphinx, Silero VAD) and Debian's `festival` and `festvox-us-slt-hts`.
`turnlog.record` never imports this package.
"""
