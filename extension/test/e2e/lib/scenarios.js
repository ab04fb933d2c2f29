// What the browser tests share: the three stand-in conversations, the
// reply they stream, and polling helpers over the daemon's HTTP API.
import crypto from "node:crypto";
import { until } from "./daemon.js";

export const PLATFORMS = ["chatgpt", "claude", "gemini"];

/** Fresh conversation URLs, one per site (ids in each site's own format). */
export function conversations() {
  const uuid = () => crypto.randomUUID();
  const hex = crypto.randomBytes(8).toString("hex");
  const ids = { chatgpt: uuid(), claude: uuid(), gemini: hex };
  return {
    ids,
    urls: {
      chatgpt: `https://chatgpt.com/c/${ids.chatgpt}`,
      claude: `https://claude.ai/chat/${ids.claude}`,
      gemini: `https://gemini.google.com/app/${ids.gemini}`,
    },
  };
}

/** A reply with line breaks, a code block and a list; the stored text must equal it. */
export function reply(platform, n) {
  return `Reply ${n} from the ${platform} stand-in.\nA second line of it.\n\n\`\`\`python\ndef double(x):\n    return x * 2\n\`\`\`\n\n- first point\n- second point\n\nThe end of reply ${n}.`;
}

export async function clients(daemon) {
  return (await daemon.get("/v1/browser")).data.clients;
}

/** Every message of the conversation (the list is paged by 500). */
export async function messages(daemon, platform, conversationId) {
  const all = [];
  for (let offset = 0; offset !== null; ) {
    const r = await daemon.get(`/v1/messages?platform=${platform}&conversation_id=${encodeURIComponent(conversationId)}&limit=500&offset=${offset}`);
    all.push(...r.data.messages);
    offset = r.data.next_offset;
  }
  return all;
}

export async function rawText(daemon, messageId) {
  return (await daemon.get(`/v1/messages/${encodeURIComponent(messageId)}`)).data.raw_text;
}

/** Waits for exactly `n` messages in the conversation (more is an error at once). */
export async function waitMessages(daemon, platform, conversationId, n, ms = 20000) {
  return until(`${n} ${platform} messages`, async () => {
    const list = await messages(daemon, platform, conversationId);
    if (list.length > n) throw new Error(`more than ${n} messages: ${JSON.stringify(list.map((m) => m.message_id))}`);
    return list.length === n ? list : null;
  }, ms);
}

/** Server-sent events of a relayed stream, parsed. */
export function parseSse(text) {
  return text
    .split("\n\n")
    .filter((b) => b.trim())
    .map((block) => {
      const event = /^event: (.*)$/m.exec(block)?.[1];
      const data = /^data: (.*)$/m.exec(block)?.[1];
      return { event, data: data ? JSON.parse(data) : null };
    });
}

/**
 * Renewal end to end for one conversation: switch it to auto, have the
 * stand-in stream a reply (`replyIn(src)`), wait for the job to end done,
 * switch it back to manual (before the stand-in's answer to the renewal
 * makes another job). Returns `{job, lc}`; a failed job throws its error.
 */
export async function renewalRoundTrip(daemon, platform, conversationId, replyIn, n) {
  const list = (await daemon.get(`/v1/renewal/conversations?platform=${platform}`)).data.conversations;
  const lc = list.find((c) => c.active_link && c.active_link.remote_conversation_id === conversationId);
  if (!lc) throw new Error(`no local conversation for ${platform} ${conversationId}`);
  const switched = await daemon.post(`/v1/renewal/conversations/${lc.local_conversation_id}/auto`);
  if (switched.data.automation_status !== "auto") throw new Error(JSON.stringify(switched));
  const before = (await messages(daemon, platform, conversationId)).length;
  await replyIn(reply(platform, n));
  await waitMessages(daemon, platform, conversationId, before + 1);
  const job = await until(`${platform} renewal job done`, async () => {
    const jobs = (await daemon.get(`/v1/renewal/jobs?local_conversation_id=${lc.local_conversation_id}`)).data.jobs;
    const failed = jobs.find((j) => j.status === "failed");
    if (failed) throw new Error(`job failed: ${failed.last_error}`);
    return jobs.find((j) => j.status === "done");
  }, 30000);
  await daemon.post(`/v1/renewal/conversations/${lc.local_conversation_id}/manual`);
  return { job, lc };
}
