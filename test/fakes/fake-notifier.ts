import type { AgentNotification, AgentNotifier } from "../../src/butler/notifier.js";

/** Records notifications; can be told to fail, like an agent that is not reachable. */
export class FakeNotifier implements AgentNotifier {
  readonly sent: AgentNotification[] = [];
  failing = false;
  async notify(n: AgentNotification): Promise<number> {
    if (this.failing) throw new Error("agent unreachable");
    this.sent.push(n);
    return 1;
  }
  of(type: AgentNotification["type"]): AgentNotification[] {
    return this.sent.filter((n) => n.type === type);
  }
}
