"""``notebook``: a deterministic agent whose reply shows its continuity.

Each reply says how many turns the session has seen and what the notebook
holds, so a restart or failover that lost state is visible from outside. Past
``SHOWN_NOTES`` notes a reply shows the count and the newest ones (``recall``
lists them all), so a reply does not grow with the notebook.

Commands (anything else is just noted):
  ``remember TEXT``  add a note
  ``recall``         list the notes
  ``forget``         clear the notes
  ``ask PEER TEXT``  message a managed peer and note its answer
  ``tool NAME [JSON]``  call a tool its draft grants (e.g. ``tool clock.now {}``), note the result
  ``tools``          list the tools its draft grants
  ``context``        show the app context its draft carries (also the turn's
                     structured output, exactly as the customizer built it)
"""

from __future__ import annotations

import json

from mobkit.core import jsontext
from mobkit.core.errors import InvalidArgument
from mobkit.runtime.sdk import Agent, TurnContext

SHOWN_NOTES = 10


class NotebookAgent(Agent):
    kind = "notebook"

    async def on_turn(self, ctx: TurnContext, message: str) -> str:
        turns = int(self.state.get("turns", 0)) + 1
        self.state["turns"] = turns
        notes: list[str] = self.state.setdefault("notes", [])
        command, _, rest = message.strip().partition(" ")
        if command == "remember" and rest:
            notes.append(rest)
            said = f"noted {rest!r}"
        elif command == "forget":
            notes.clear()
            said = "forgot everything"
        elif command == "ask" and rest:
            peer, _, text = rest.partition(" ")
            answer = await ctx.send_to_peer(peer, text or "hello")
            notes.append(f"{peer} said: {answer}")
            said = f"asked {peer}"
        elif command == "tool" and rest:
            name, _, raw = rest.partition(" ")
            try:
                arguments = json.loads(raw) if raw.strip() else {}
            except ValueError as exc:
                raise InvalidArgument("message", f"tool arguments are not JSON: {exc}") from None
            if not isinstance(arguments, dict):
                raise InvalidArgument("message", "tool arguments must be a JSON object")
            await ctx.emit_tool_call(name, finished=False)
            try:
                result = json.dumps(await ctx.call_tool(name, arguments), sort_keys=True)
            finally:
                await ctx.emit_tool_call(name, finished=True)
            notes.append(f"{name} -> {result}")
            said = f"called {name}: {result}"
        elif command == "tools":
            said = "my tools: " + (", ".join(t.name for t in ctx.tools) or "none")
        elif command == "context":
            app_context = self.draft.app_context
            said = "my context: " + (
                "none" if app_context is None else jsontext.encode(app_context)
            )
            ctx.structured_output = app_context
        elif command == "recall":
            said = "recalling"
        else:
            self.state["last_message"] = message
            said = f"heard {message!r}"
        if len(notes) > SHOWN_NOTES and command != "recall":
            memory = f"{len(notes)} notes, the newest: " + "; ".join(notes[-SHOWN_NOTES:])
        else:
            memory = "; ".join(notes) if notes else "nothing yet"
        return f"[{self.identity} turn {turns}] {said}. I remember: {memory}"
