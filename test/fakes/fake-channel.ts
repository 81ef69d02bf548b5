import type { ApprovalCard } from "../../src/butler/approval-card.js";
import type {
  ApprovalChannel,
  Audience,
  ChannelKind,
  PostedCard,
  PostResult,
  ReviewHandler,
} from "../../src/channels/channel.js";
import { Observed } from "./observed.js";

/** An approval surface in memory: keeps every card as last rendered, and presses buttons on demand. */
export class FakeChannel extends Observed implements ApprovalChannel {
  readonly cards = new Map<string, ApprovalCard>();
  readonly posts: { card: ApprovalCard; approvers: string[] }[] = [];
  readonly notes: string[] = [];
  #onReview: ReviewHandler | undefined;
  #n = 0;
  constructor(readonly kind: ChannelKind = "dashboard") {
    super();
  }
  async start(onReview: ReviewHandler): Promise<void> {
    this.#onReview = onReview;
  }
  async stop(): Promise<void> {}
  async post(card: ApprovalCard, audience: Audience): Promise<PostResult> {
    const messageId = `m${++this.#n}`;
    this.cards.set(messageId, card);
    this.posts.push({ card, approvers: audience.approvers.map((a) => a.id) });
    this.changed();
    return { posted: [{ channel: this.kind, chatId: "room", messageId }], failed: [] };
  }
  async update(posted: PostedCard, card: ApprovalCard, note?: string): Promise<void> {
    if (!this.cards.has(posted.messageId)) throw new Error(`no message ${posted.messageId}`);
    this.cards.set(posted.messageId, card);
    if (note) this.notes.push(note);
    this.changed();
  }
  /** The card of a request, as last rendered. */
  cardOf(requestId: string): ApprovalCard | undefined {
    return [...this.cards.values()].find((c) => c.requestId === requestId);
  }
  press(requestId: string, verdict: "approve" | "deny", userId: string) {
    if (!this.#onReview) throw new Error("press before start()");
    return this.#onReview({ requestId, verdict, actor: { channel: this.kind, userId } });
  }
}
