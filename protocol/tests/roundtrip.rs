//! Property tests: every message survives encode → decode unchanged, and
//! decode never panics on arbitrary bytes.

use proptest::prelude::*;
use x2gobroker_protocol::*;

fn any_string() -> impl Strategy<Value = String> {
    proptest::string::string_regex(".{0,64}").unwrap()
}

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        any::<u16>().prop_map(|version| Request::Hello { version }),
        Just(Request::Status),
        (
            any_string(),
            any_string(),
            proptest::option::of(any_string()),
            proptest::option::of(any_string())
        )
            .prop_map(
                |(user, pw, service, client_address)| Request::Authenticate(AuthRequest {
                    user,
                    password: Password::new(pw),
                    service,
                    client_address,
                })
            ),
        (any_task(), proptest::option::of(any_string()))
            .prop_map(|(task, ssh_client)| Request::RunSshTask(SshTaskRequest { task, ssh_client })),
        (any_string(), any_string(), any_string()).prop_map(|(user, pw, new)| Request::ChangePassword(
            AuthRequest {
                user,
                password: Password::new(pw),
                service: None,
                client_address: None,
            },
            Password::new(new)
        )),
    ]
}

fn any_task() -> impl Strategy<Value = SshTask> {
    (
        any_string(),
        proptest::collection::vec(proptest::option::of(any_string()), 8),
        any::<bool>(),
    )
        .prop_map(|(task, mut o, debug)| SshTask {
            task,
            user: o.pop().flatten(),
            login: o.pop().flatten(),
            auth_cookie: o.pop().flatten(),
            profile_id: o.pop().flatten(),
            backend: o.pop().flatten(),
            config_file: o.pop().flatten(),
            debug,
            password: o.pop().flatten().map(Password::new),
            new_password: o.pop().flatten().map(Password::new),
        })
}

fn any_error_kind() -> impl Strategy<Value = ErrorKind> {
    prop_oneof![
        Just(ErrorKind::DeniedByPolicy),
        Just(ErrorKind::AuthenticationFailed),
        any::<u32>().prop_map(|retry_after_secs| ErrorKind::Throttled { retry_after_secs }),
        Just(ErrorKind::BadRequest),
        Just(ErrorKind::Unavailable),
        any::<u16>().prop_map(|supported| ErrorKind::VersionMismatch { supported }),
        Just(ErrorKind::Internal),
        Just(ErrorKind::NewPasswordRefused),
    ]
}

fn any_response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (any::<u16>(), any_string()).prop_map(|(version, server_version)| Response::Hello {
            version,
            server_version
        }),
        Just(Response::Authenticated),
        Just(Response::PasswordChanged),
        (any_string(), any::<u64>(), any::<[u64; 6]>()).prop_map(|(version, uptime_secs, c)| {
            Response::Status(StatusReport {
                version,
                uptime_secs,
                counters: Counters {
                    requests: c[0],
                    successes: c[1],
                    failures: c[2],
                    throttled: c[3],
                    policy_denials: c[4],
                    in_flight: c[5],
                },
            })
        }),
        (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..512)).prop_map(|(err, data)| {
            Response::TaskOutput {
                stream: if err {
                    OutputStream::Stderr
                } else {
                    OutputStream::Stdout
                },
                data,
            }
        }),
        any::<i32>().prop_map(|exit_code| Response::TaskFinished { exit_code }),
        (any_error_kind(), any_string())
            .prop_map(|(kind, message)| Response::Error(ErrorReply { kind, message })),
    ]
}

proptest! {
    #[test]
    fn requests_round_trip(req in any_request()) {
        let frame = encode(&req).unwrap();
        prop_assert_eq!(decode::<Request>(&frame).unwrap(), req);
    }

    #[test]
    fn responses_round_trip(resp in any_response()) {
        let frame = encode(&resp).unwrap();
        prop_assert_eq!(decode::<Response>(&frame).unwrap(), resp);
    }

    #[test]
    fn worker_jobs_round_trip(user in any_string(), uid in any::<u32>(), task in any_task(), addr in proptest::option::of(any_string()), ms in any::<u64>()) {
        let job = WorkerJob { broker_user: user, caller_uid: uid, task, ssh_client: addr, time_limit_ms: ms };
        let frame = encode(&job).unwrap();
        prop_assert_eq!(decode::<WorkerJob>(&frame).unwrap(), job);
    }

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode::<Request>(&bytes);
        let _ = decode::<Response>(&bytes);
    }

    #[test]
    fn any_prefix_of_a_frame_is_rejected(req in any_request(), cut in any::<prop::sample::Index>()) {
        let frame = encode(&req).unwrap();
        let n = cut.index(frame.len());
        prop_assert!(decode::<Request>(&frame[..n]).is_err());
    }
}
