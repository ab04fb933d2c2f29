//! Command line of the simulator: plain std parsing (no CLI crate is
//! available), `--flag value` and `--flag=value` both accepted.

use std::time::Duration;

pub const DEFAULT_URL: &str = "ws://127.0.0.1:4318/ws/browser";

pub const HELP: &str = "\
baa-plugin-sim - a stand-in for the baa-conductor browser plugin

Connects to the daemon's bridge WebSocket, introduces itself like the plugin
does (hello, tabs, login_state, optionally one browser.final_message) and
answers the daemon's requests (proxy_delivery, action, api_request) in a
chosen way, printing every frame it receives (<-) and sends (->).

USAGE:
    baa-plugin-sim [OPTIONS]

CONNECTION:
    --url URL             bridge endpoint [default: ws://127.0.0.1:4318/ws/browser]
    --token T             send `Authorization: Bearer T` [default: $BAA_TOKEN, which
                          unlike a flag does not show in `ps`]
    --origin O            send an `Origin: O` header (to test origin refusal)
    --client-id ID        hello client_id [default: sim-1]
    --platform P          a platform served; repeatable [default: chatgpt]

ANNOUNCEMENTS (sent right after hello_ack):
    --tab ID:PLATFORM[:CONVERSATION]
                          a tab reported in `tabs`; repeatable
    --login P             send a login_state (metadata only) for P; repeatable
    --message TEXT        send one browser.final_message (platform = first --platform)
    --conversation C      its conversation_id [default: sim-conv]
    --message-id M        its message_id [default: sim-<unix millis>]
    --tab-id N|none       its tab_id; `none` omits it (no delivery route) [default: 17]
    --exit-after-message  exit 0 once the message is acked, 1 if an error answers it
    --messages-file F     then replay F: one browser.final_message object per line
                          (`type` optional), pipelined with at most 64 unanswered;
                          prints `messages-file: N sent, A acked, R rejected` at the end

ANSWERING DAEMON REQUESTS:
    --mode MODE           succeed | fail[:REASON] | silent | stream:N | http:STATUS
                          [default: succeed]
                            succeed      action_result ok, api_response 200, streams of 3 events
                            fail:REASON  action_result failed with REASON, api_response 500,
                                         streams of 2 events then stream_error code REASON
                            silent       never answer (exercises the daemon's timeouts)
                            stream:N     like succeed, streams carry N events
                            http:STATUS  action_result not failed but http_status STATUS,
                                         api_response / stream_end with status STATUS
    --delay-ms N          wait N ms before each answer (reading goes on meanwhile) [default: 0]

OUTPUT:
    --quiet               print only errors and the final summary
    -h, --help            this text
    -V, --version         print the version

EXIT STATUS:
    0  the daemon closed the connection (`closed: CODE REASON`), Ctrl-C,
       or --exit-after-message got its ack
    1  connection error, no hello_ack, or the message was rejected
    2  bad command line
";

/// How daemon requests are answered (`--mode`): the answers are built by
/// the library's `bridge::plugin_answers`, which the tests use too.
pub use baa_conductor::bridge::plugin_answers::Mode;

/// One `--tab ID:PLATFORM[:CONVERSATION]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tab {
    pub tab_id: i64,
    pub platform: String,
    pub conversation_id: Option<String>,
}

/// Everything the command line decides.
#[derive(Debug, Clone)]
pub struct Options {
    pub url: String,
    pub token: Option<String>,
    pub origin: Option<String>,
    pub client_id: String,
    pub platforms: Vec<String>,
    pub tabs: Vec<Tab>,
    pub logins: Vec<String>,
    pub message: Option<String>,
    pub conversation: String,
    pub message_id: Option<String>,
    /// `None` when `--tab-id none`: the message then creates a link without a route.
    pub tab_id: Option<i64>,
    pub mode: Mode,
    pub delay: Duration,
    pub exit_after_message: bool,
    pub messages_file: Option<String>,
    pub quiet: bool,
}

pub enum Parsed {
    Run(Box<Options>),
    Help,
    Version,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            url: DEFAULT_URL.to_string(),
            token: None,
            origin: None,
            client_id: "sim-1".to_string(),
            platforms: Vec::new(),
            tabs: Vec::new(),
            logins: Vec::new(),
            message: None,
            conversation: "sim-conv".to_string(),
            message_id: None,
            tab_id: Some(17),
            mode: Mode::Succeed,
            delay: Duration::ZERO,
            exit_after_message: false,
            messages_file: None,
            quiet: false,
        }
    }
}

impl Options {
    /// The platform the final message is reported for.
    pub fn first_platform(&self) -> &str {
        &self.platforms[0]
    }
}

pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut opts = Options::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg, None),
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "-V" | "--version" => return Ok(Parsed::Version),
            "--quiet" => opts.quiet = true,
            "--exit-after-message" => opts.exit_after_message = true,
            _ => {
                let value = match inline {
                    Some(v) => v,
                    None => args.next().ok_or(format!("{flag} needs a value"))?,
                };
                apply(&mut opts, &flag, value)?;
            }
        }
    }
    finish(opts).map(|o| Parsed::Run(Box::new(o)))
}

fn apply(opts: &mut Options, flag: &str, value: String) -> Result<(), String> {
    match flag {
        "--url" => opts.url = value,
        "--token" => opts.token = Some(value),
        "--origin" => opts.origin = Some(value),
        "--client-id" => opts.client_id = value,
        "--platform" => push_unique(&mut opts.platforms, value),
        "--tab" => opts.tabs.push(parse_tab(&value)?),
        "--login" => push_unique(&mut opts.logins, value),
        "--message" => opts.message = Some(value),
        "--conversation" => opts.conversation = value,
        "--message-id" => opts.message_id = Some(value),
        "--messages-file" => opts.messages_file = Some(value),
        "--tab-id" => opts.tab_id = parse_tab_id(&value)?,
        "--mode" => opts.mode = parse_mode(&value)?,
        "--delay-ms" => opts.delay = Duration::from_millis(number(flag, &value)?),
        _ => return Err(format!("unknown option {flag}")),
    }
    Ok(())
}

fn finish(mut opts: Options) -> Result<Options, String> {
    if opts.platforms.is_empty() {
        opts.platforms.push("chatgpt".to_string());
    }
    if opts.exit_after_message && opts.message.is_none() {
        return Err("--exit-after-message needs --message".to_string());
    }
    Ok(opts)
}

/// `hello.platforms` is a set: repeating a platform must not repeat it there.
fn push_unique(list: &mut Vec<String>, value: String) {
    if !list.contains(&value) {
        list.push(value);
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value.parse().map_err(|_| format!("{flag}: `{value}` is not a valid number"))
}

pub fn parse_mode(value: &str) -> Result<Mode, String> {
    let (name, arg) = match value.split_once(':') {
        Some((n, a)) => (n, Some(a)),
        None => (value, None),
    };
    match (name, arg) {
        ("succeed", None) => Ok(Mode::Succeed),
        ("silent", None) => Ok(Mode::Silent),
        ("fail", None) => Ok(Mode::Fail("simulated_failure".to_string())),
        ("fail", Some(r)) if !r.is_empty() => Ok(Mode::Fail(r.to_string())),
        ("stream", Some(n)) => Ok(Mode::Stream(number("--mode stream", n)?)),
        ("http", Some(s)) => parse_status(s).map(Mode::Http),
        _ => Err(format!(
            "--mode: `{value}` is not one of succeed, fail[:REASON], silent, stream:N, http:STATUS"
        )),
    }
}

fn parse_status(value: &str) -> Result<u16, String> {
    let status: u16 = number("--mode http", value)?;
    if !(100..=599).contains(&status) {
        return Err(format!("--mode http: {status} is not an HTTP status"));
    }
    Ok(status)
}

/// `17:chatgpt:conv-abc`; the conversation may itself contain `:`.
pub fn parse_tab(value: &str) -> Result<Tab, String> {
    let mut parts = value.splitn(3, ':');
    let id = parts.next().unwrap_or_default();
    let platform = parts.next().filter(|p| !p.is_empty());
    let (Ok(tab_id), Some(platform)) = (id.parse::<i64>(), platform) else {
        return Err(format!("--tab: `{value}` is not TAB_ID:PLATFORM[:CONVERSATION_ID]"));
    };
    Ok(Tab {
        tab_id,
        platform: platform.to_string(),
        conversation_id: parts.next().filter(|c| !c.is_empty()).map(str::to_string),
    })
}

fn parse_tab_id(value: &str) -> Result<Option<i64>, String> {
    if value == "none" {
        return Ok(None);
    }
    number("--tab-id", value).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Options, String> {
        match parse(args.iter().map(|s| s.to_string()))? {
            Parsed::Run(o) => Ok(*o),
            _ => Err("not a run".into()),
        }
    }

    #[test]
    fn defaults() {
        let o = run(&[]).unwrap();
        assert_eq!(o.url, DEFAULT_URL);
        assert_eq!(o.platforms, ["chatgpt"]);
        assert_eq!(o.tab_id, Some(17));
        assert_eq!(o.mode, Mode::Succeed);
    }

    #[test]
    fn flags_and_inline_values() {
        let o = run(&[
            "--platform=claude",
            "--platform",
            "chatgpt",
            "--platform",
            "claude",
            "--tab",
            "3:claude:a:b",
            "--mode=http:503",
            "--delay-ms",
            "250",
            "--tab-id",
            "none",
        ])
        .unwrap();
        assert_eq!(o.platforms, ["claude", "chatgpt"]);
        assert_eq!(o.tabs[0].conversation_id.as_deref(), Some("a:b"));
        assert_eq!(o.mode, Mode::Http(503));
        assert_eq!(o.delay, Duration::from_millis(250));
        assert_eq!(o.tab_id, None);
    }

    #[test]
    fn modes() {
        assert_eq!(parse_mode("fail:boom").unwrap(), Mode::Fail("boom".into()));
        assert_eq!(parse_mode("stream:0").unwrap(), Mode::Stream(0));
        assert!(parse_mode("fail:").is_err());
        assert!(parse_mode("http:99").is_err());
        assert!(parse_mode("stream").is_err());
        assert!(parse_mode("loud").is_err());
    }

    #[test]
    fn bad_lines() {
        assert!(run(&["--tab", "x:chatgpt"]).is_err());
        assert!(run(&["--tab", "1"]).is_err());
        assert!(run(&["--exit-after-message"]).is_err());
        assert!(run(&["--url"]).is_err());
        assert!(run(&["--nope", "1"]).is_err());
    }
}
