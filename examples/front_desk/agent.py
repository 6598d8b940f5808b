"""A front desk that hands the caller to billing: two agents, function tools, a handoff,
written the way LiveKit's examples write them and recorded by Turnlog.

Run it: `python examples/front_desk/agent.py dev` (LIVEKIT_URL, LIVEKIT_API_KEY,
LIVEKIT_API_SECRET and OPENAI_API_KEY set). Say "transfer me to billing", then ask for the
status of invoice 1042.
"""

from __future__ import annotations

from livekit.agents import Agent, AgentSession, JobContext, RunContext, WorkerOptions, cli
from livekit.agents.llm import function_tool
from livekit.plugins import openai, silero

import turnlog

INVOICES = {
    "1042": "Invoice 1042 for 120 euros was paid on November 3.",
    "1043": "Invoice 1043 for 75 euros is due on December 15.",
}


class FrontDesk(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are the front desk of Acme Energy, on the phone. Keep answers to one "
                "sentence. For invoices, bills and payments, transfer the caller to billing."
            )
        )

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Greet the caller and ask how you can help.")

    @function_tool
    async def transfer_to_billing(self, context: RunContext) -> tuple[Agent, str]:
        """Transfer the caller to the billing team, for invoices, bills and payments."""
        return Billing(), "Transferring you to billing."


class Billing(Agent):
    def __init__(self) -> None:
        super().__init__(
            instructions=(
                "You are Acme Energy's billing assistant, on the phone. Look invoices up "
                "with lookup_invoice and read the result to the caller in one sentence."
            )
        )

    async def on_enter(self) -> None:
        self.session.generate_reply(instructions="Say you are billing; ask for the invoice.")

    @function_tool
    async def lookup_invoice(self, invoice_number: str) -> str:
        """Look up the status of an invoice.

        Args:
            invoice_number: The invoice's number, e.g. "1042".
        """
        return INVOICES.get(invoice_number.strip(), f"There is no invoice {invoice_number}.")


async def entrypoint(ctx: JobContext) -> None:
    session = AgentSession(
        vad=silero.VAD.load(),
        stt=openai.STT(),
        llm=openai.LLM(model="gpt-4.1-mini"),
        tts=openai.TTS(voice="ash"),
    )
    await turnlog.record(session, ctx)
    await session.start(agent=FrontDesk(), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(WorkerOptions(entrypoint_fnc=entrypoint, host="127.0.0.1"))
