//! Unit tests of the block parser: every shape of fence and block, and a
//! property test that no input panics or costs more than linear time.

use serde_json::json;

use super::*;

fn one(text: &str) -> Block {
    let blocks = parse(text, 8);
    assert_eq!(blocks.len(), 1, "{text:?} → {blocks:?}");
    blocks.into_iter().next().unwrap()
}

fn instruction(text: &str) -> Instruction {
    match one(text).outcome {
        Outcome::Instruction(i) => i,
        other => panic!("{text:?} → {other:?}"),
    }
}

fn invalid_reason(text: &str) -> Reason {
    match one(text).outcome {
        Outcome::Invalid { reason, message, .. } => {
            assert!(!message.is_empty());
            reason
        }
        other => panic!("{text:?} → {other:?}"),
    }
}

fn obj(v: serde_json::Value) -> Params {
    Params::Json(v.as_object().unwrap().clone())
}

#[test]
fn text_without_blocks_has_none() {
    assert!(parse("", 8).is_empty());
    assert!(parse("plain answer, no fences at all", 8).is_empty());
    assert!(parse("mentions baa but has no block", 8).is_empty());
    assert!(parse("```rust\nfn main() {}\n```\n", 8).is_empty());
    assert!(parse("inline ```baa @conductor.status``` is not a fence", 8).is_empty());
}

#[test]
fn header_alone_has_empty_text_params() {
    let i = instruction("```baa\n@conductor.status\n```");
    assert_eq!((i.target.as_str(), i.tool.as_str()), ("conductor", "status"));
    assert_eq!(i.params, Params::Text(String::new()));
    assert_eq!(i.params.kind(), crate::store::ParamsKind::Text);
}

#[test]
fn free_text_params_follow_the_header() {
    let i = instruction("before\n```baa\n@conductor.exec\nls -la ~/code\necho done\n```\nafter");
    assert_eq!(i.tool, "exec");
    assert_eq!(i.params, Params::Text("ls -la ~/code\necho done".into()));
    // On the same line too.
    let i = instruction("```baa\n@conductor.exec   echo hi  \n```");
    assert_eq!(i.params, Params::Text("echo hi".into()));
}

#[test]
fn json_params_on_the_same_line_or_the_next_lines() {
    let i = instruction("```baa\n@conductor.files.read {\"path\": \"~/notes/todo.md\"}\n```");
    assert_eq!((i.target.as_str(), i.tool.as_str()), ("conductor", "files.read"));
    assert_eq!(i.params, obj(json!({"path": "~/notes/todo.md"})));
    assert_eq!(i.params.kind(), crate::store::ParamsKind::Json);
    let i = instruction(
        "```baa\n@conductor.files.write\n{\n  \"path\": \"a.txt\",\n  \"content\": \"x\"\n}\n```",
    );
    assert_eq!(i.params, obj(json!({"path": "a.txt", "content": "x"})));
}

#[test]
fn params_starting_with_a_brace_must_be_one_json_object() {
    assert_eq!(invalid_reason("```baa\n@conductor.exec {\"command\": \n```"), Reason::InvalidJson);
    // The first line was read: the block still names its tool.
    let Outcome::Invalid { name, .. } = one("```baa\n@conductor.exec {1}\n```").outcome else { panic!() };
    assert_eq!(name, Some(("conductor".to_string(), "exec".to_string())));
    assert_eq!(invalid_reason("```baa\n@conductor.exec {\"a\":1} trailing\n```"), Reason::InvalidJson);
    assert_eq!(invalid_reason("```baa\n@conductor.exec {echo hi; }\n```"), Reason::InvalidJson);
    // Other JSON values are text: they do not start with a brace.
    let i = instruction("```baa\n@conductor.exec [1, 2]\n```");
    assert_eq!(i.params, Params::Text("[1, 2]".into()));
}

#[test]
fn headers_are_checked() {
    assert_eq!(invalid_reason("```baa\n```"), Reason::MissingHeader);
    assert_eq!(invalid_reason("```baa\n\n  \n```"), Reason::MissingHeader);
    assert_eq!(invalid_reason("```baa\nls -la\n```"), Reason::MissingHeader);
    assert_eq!(invalid_reason("```baa\n@conductor\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@Conductor.exec\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor.\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor..exec\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor.9exec\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor.exec-x\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor.exec{\"a\":1}\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@.exec\n```"), Reason::InvalidHeader);
    // Leading blank lines and indentation before the header are fine.
    let i = instruction("```baa\n\n   @my_host.tool_2.sub_x\n```");
    assert_eq!((i.target.as_str(), i.tool.as_str()), ("my_host", "tool_2.sub_x"));
}

#[test]
fn an_unclosed_block_is_invalid_and_keeps_its_text() {
    let b = one("```baa\n@conductor.exec\nrm -rf /tmp/x");
    assert!(matches!(b.outcome, Outcome::Invalid { reason: Reason::UnclosedBlock, .. }));
    assert_eq!(b.text, "@conductor.exec\nrm -rf /tmp/x");
    // A shorter or different fence does not close it.
    let b = one("````baa\n@conductor.status\n```\n~~~~\n");
    assert!(matches!(b.outcome, Outcome::Invalid { reason: Reason::UnclosedBlock, .. }));
    // A fence with an info string does not close a block either.
    let b = one("```baa\n@conductor.status\n```baa\n");
    assert!(matches!(b.outcome, Outcome::Invalid { reason: Reason::UnclosedBlock, .. }));
}

#[test]
fn fence_variants() {
    // Tildes, longer fences, an info string with more words, CRLF.
    assert_eq!(instruction("~~~baa\n@conductor.status\n~~~").tool, "status");
    assert_eq!(instruction("`````baa\n@conductor.status\n````````").tool, "status");
    assert_eq!(instruction("``` baa  title=x\n@conductor.status\n```").tool, "status");
    assert_eq!(
        instruction("```baa\r\n@conductor.exec\r\necho a\r\n```\r\n").params,
        Params::Text("echo a".into())
    );
    // Closing fence followed by blanks; up to three spaces of indentation.
    assert_eq!(instruction("   ```baa\n   @conductor.status\n  ```   \n").tool, "status");
    // The fence's indentation is removed from the content, no more.
    let b = one("  ```baa\n  @conductor.exec\n    indented\n```");
    assert_eq!(b.text, "@conductor.exec\n  indented");
}

#[test]
fn other_info_strings_and_non_fences_are_ignored() {
    assert!(parse("```baad\n@conductor.status\n```", 8).is_empty());
    assert!(parse("```BAA\n@conductor.status\n```", 8).is_empty());
    assert!(parse("```json baa\n@conductor.status\n```", 8).is_empty());
    assert!(parse("    ```baa\n    @conductor.status\n    ```", 8).is_empty(), "4 spaces = indented code");
    assert!(parse("\t```baa\n@conductor.status\n```", 8).is_empty());
    assert!(parse("``baa\n@conductor.status\n``", 8).is_empty(), "two backticks is no fence");
    assert!(parse("```baa`x\n@conductor.status\n```", 8).is_empty(), "backtick in the info string");
    assert!(parse("> ```baa\n> @conductor.status\n> ```", 8).is_empty(), "block quotes are not read");
}

#[test]
fn blocks_nested_in_other_fences_are_ignored() {
    let text =
        "````markdown\n```baa\n@conductor.exec\nrm -rf ~\n```\n````\n\n```baa\n@conductor.status\n```\n";
    let blocks = parse(text, 8);
    assert_eq!(blocks.len(), 1);
    assert_eq!(blocks[0].index, 0);
    assert!(matches!(&blocks[0].outcome, Outcome::Instruction(i) if i.tool == "status"));
    // An unclosed other fence swallows the rest of the message.
    assert!(parse("```python\nprint(1)\n```baa\n@conductor.status\n```", 8).is_empty());
    assert!(parse("~~~\n```baa\n@conductor.status\n```\n", 8).is_empty());
}

#[test]
fn broken_blocks_do_not_stop_the_others() {
    let text =
        "```baa\n@conductor.status\n```\n```baa\nnot a header\n```\n```baa\n@conductor.exec {bad\n```\n\
                ```baa\n@conductor.describe\n```";
    let blocks = parse(text, 8);
    let shapes: Vec<_> = blocks
        .iter()
        .map(|b| match &b.outcome {
            Outcome::Instruction(i) => i.tool.clone(),
            Outcome::Invalid { reason, .. } => reason.code().into_owned(),
            Outcome::TooMany => "too_many".into(),
        })
        .collect();
    assert_eq!(shapes, ["status", "missing_header", "invalid_json", "describe"]);
    assert_eq!(blocks.iter().map(|b| b.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
}

#[test]
fn blocks_past_the_limit_are_too_many_and_bounded() {
    let text = "```baa\n@conductor.status\n```\n".repeat(5);
    let blocks = parse(&text, 2);
    assert_eq!(blocks.len(), 5);
    assert!(matches!(blocks[1].outcome, Outcome::Instruction(_)));
    assert!(blocks[2..].iter().all(|b| b.outcome == Outcome::TooMany));
    // Their params are never read: a broken one is still just too many.
    let blocks = parse("```baa\n@x.y\n```\n```baa\n@x.y {broken\n```", 1);
    assert_eq!(blocks[1].outcome, Outcome::TooMany);
    // A flood is cut at the limit plus MAX_EXTRA_BLOCKS.
    let text = "```baa\n```\n".repeat(10_000);
    assert_eq!(parse(&text, 8).len(), 8 + MAX_EXTRA_BLOCKS);
    assert_eq!(parse(&text, 0).len(), MAX_EXTRA_BLOCKS);
}

#[test]
fn block_text_is_what_the_id_is_hashed_from() {
    let blocks = parse("```baa\n@conductor.exec\necho a\n```\n```baa\n@conductor.exec\necho a\n```", 8);
    assert_eq!(blocks[0].text, blocks[1].text);
    assert_eq!(blocks[0].text, "@conductor.exec\necho a");
    // CRLF and LF give the same text, so the same id.
    assert_eq!(one("```baa\r\n@conductor.status\r\n```").text, one("```baa\n@conductor.status\n```").text);
}

#[test]
fn unicode_and_odd_bytes_are_fine() {
    let i = instruction("```baa\n@conductor.exec\necho 'héllo — 世界 🎉'\n```");
    assert_eq!(i.params, Params::Text("echo 'héllo — 世界 🎉'".into()));
    assert_eq!(invalid_reason("```baa\n@conductor.é\n```"), Reason::InvalidHeader);
    assert_eq!(invalid_reason("```baa\n@conductor.exec\u{a0}x\n```"), Reason::InvalidHeader);
}

mod properties {
    use super::super::*;
    use proptest::prelude::*;

    /// Pieces that exercise every branch of the scanner when shuffled.
    fn piece() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("```baa\n".to_string()),
            Just("~~~baa\n".to_string()),
            Just("```\n".to_string()),
            Just("````\n".to_string()),
            Just("~~~\n".to_string()),
            Just("   ```baa \n".to_string()),
            Just("@conductor.exec\n".to_string()),
            Just("@conductor.files.read {\"path\": \"x\"}\n".to_string()),
            Just("{\"a\": [1, {\"b\": \n".to_string()),
            Just("@\n".to_string()),
            Just("baa\r\n".to_string()),
            Just("\n".to_string()),
            "[ -~]{0,20}\n",
            any::<String>(),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max in 0usize..12) {
            let text = String::from_utf8_lossy(&bytes);
            let blocks = parse(&text, max);
            prop_assert!(blocks.len() <= max + MAX_EXTRA_BLOCKS);
        }

        #[test]
        fn shuffled_fences_never_panic_and_keep_their_invariants(
            pieces in proptest::collection::vec(piece(), 0..64),
            max in 0usize..6,
        ) {
            let text = pieces.concat();
            let blocks = parse(&text, max);
            prop_assert!(blocks.len() <= max + MAX_EXTRA_BLOCKS);
            for (i, b) in blocks.iter().enumerate() {
                prop_assert_eq!(b.index, i);
                prop_assert_eq!(i >= max, b.outcome == Outcome::TooMany);
                // The content is part of the message, line by line.
                for line in b.text.lines() {
                    prop_assert!(text.contains(line.trim_start()));
                }
            }
        }
    }
}

/// The CPU time this thread has used, in nanoseconds
/// ([`crate::util::thread_cpu_time`]: a loaded machine does not inflate the
/// longer runs).
fn thread_cpu_ns() -> f64 {
    crate::util::thread_cpu_time().as_nanos() as f64
}

/// Linear time, as the CPU time of this thread: per byte, parsing 256 × 256
/// copies of a shape must cost less than 8 times parsing 256 copies (each
/// the best of five). A scan that is quadratic anywhere makes the large
/// text ~256 times dearer per byte, over the inputs such a scan would
/// choke on. (Checked: one copy of the block so far per content line fails
/// this test.)
#[test]
fn cost_is_linear_in_the_text() {
    let shapes = [
        "```baa\n".to_string(),      // one unclosed block holding everything
        "~~~\n```baa\n".to_string(), // a fence swallowing baa openers
        "```baa\n@conductor.exec {\"a\":[[[[[[\n```\n".to_string(), // failing JSON in every block
        format!("{}\n", "`".repeat(200)), // long fence lines
        "baa ".repeat(50) + "\n",    // the prefilter passes, no fence
    ];
    for shape in shapes {
        let small = shape.repeat(256);
        let large = shape.repeat(256 * 256);
        let per_byte = |text: &str| {
            (0..5)
                .map(|_| {
                    let start = thread_cpu_ns();
                    std::hint::black_box(parse(std::hint::black_box(text), 8));
                    (thread_cpu_ns() - start) / text.len() as f64
                })
                .fold(f64::INFINITY, f64::min)
        };
        // Warm the allocator and caches once.
        per_byte(&small);
        let (a, b) = (per_byte(&small), per_byte(&large));
        assert!(b < a * 8.0 + 2.0, "{shape:?}: {a:.2} ns/B for 256 copies, {b:.2} ns/B for 65536");
    }
}
