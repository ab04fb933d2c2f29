//! Tests of the command line: commands, info flags, errors and `--flag=value`.

use super::*;

#[test]
fn commands_and_info_flags() {
    let s = Scratch::new();
    assert!(matches!(run(&[], &s.env()), Ok(Command::Serve(_))));
    assert!(matches!(run(&["serve"], &s.env()), Ok(Command::Serve(_))));
    assert!(matches!(run(&["check-config"], &s.env()), Ok(Command::CheckConfig(_))));
    for (arg, want) in [
        ("--version", Command::Version),
        ("-V", Command::Version),
        ("--help", Command::Help),
        ("-h", Command::Help),
    ] {
        assert_eq!(run(&[arg], &[]), Ok(want.clone()));
        assert_eq!(run(&["check-config", arg], &[]), Ok(want));
    }
    let help = help_text();
    for word in [
        "serve",
        "check-config",
        "--config",
        "--state-dir",
        "--listen",
        "--ws-listen",
        "--token",
        "BAA_TOKEN",
        "RUST_LOG",
        "Exit codes",
    ] {
        assert!(help.contains(word), "help lacks {word}");
    }
}

#[test]
fn command_line_errors_name_the_argument() {
    let s = Scratch::new();
    let env = s.env();
    let e = error_of(&["--frob"], &env);
    assert_eq!(e.key, "--frob");
    assert_eq!(e.to_string(), "config: --frob is not a known flag (see --help)");
    assert_eq!(error_of(&["--frob=1"], &env).key, "--frob");
    assert_eq!(error_of(&["-x"], &env).key, "-x");
    assert_eq!(error_of(&["start"], &env).key, "start");
    assert_eq!(error_of(&["serve", "extra"], &env).key, "extra");
    assert_eq!(error_of(&["--listen"], &env).to_string(), "config: --listen needs a value");
    assert_eq!(error_of(&["--listen", "--token", "x"], &env).key, "--listen");
    assert_eq!(error_of(&["--listen="], &env).key, "--listen");
    assert_eq!(error_of(&["--help=1"], &env).key, "--help");
    let e = error_of(&["--listen", "127.0.0.1:1", "--listen=127.0.0.1:2"], &env);
    assert_eq!(e.key, "--listen");
}

#[test]
fn equals_form_works_for_every_flag() {
    let s = Scratch::new();
    let file = s.write("c.json", r#"{"node_id": "eq"}"#);
    let state = s.dir.join("st");
    let c = config_of(
        &[
            &format!("--config={}", file.display()),
            &format!("--state-dir={}", state.display()),
            "--listen=127.0.0.1:0",
            "--ws-listen=127.0.0.1:0",
            "--token=a=b",
        ],
        &[],
    );
    assert_eq!(c.node_id, "eq");
    assert_eq!(c.state_dir, state);
    assert_eq!(c.listen, "127.0.0.1:0");
    assert_eq!(c.ws_listen, "127.0.0.1:0");
    assert_eq!(c.token.as_deref(), Some("a=b"));
}
