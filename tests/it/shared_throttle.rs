//! Budgets shared in a real `redis-server` (`--throttle-store`): the Lua script against
//! governor's GCRA, two proxies drawing from one budget, and a store that dies and
//! comes back. Each test starts its own `redis-server` on a free port with no
//! persistence, and skips with one line when the program is missing.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use governor::clock::FakeRelativeClock;
use governor::{Quota, RateLimiter};
use http::{Method, Request, StatusCode};
use http_body_util::Full;
use rand::{Rng, SeedableRng};
use scimguard::cli::RunArgs;
use scimguard::config::Config;
use scimguard::metrics::Metrics;
use scimguard::throttle::shared::{BucketParams, GcraScript, ScriptAnswer};
use scimguard::throttle::{StoreFailure, ThrottleMode};
use scimguard::Proxy;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::support::*;

/// A `redis-server` of this test's own, killed when dropped.
pub struct RedisServer {
    program: std::path::PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// `None` (after one skip line) when `redis-server` is not installed.
    pub async fn start() -> Option<RedisServer> {
        let program = crate::external::program("redis-server", "redis-server")?;
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let mut server = RedisServer {
            program,
            port,
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and waits until it answers PING.
    pub async fn restart(&mut self) {
        let child = Command::new(&self.program)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                    let pong: redis::RedisResult<String> =
                        redis::cmd("PING").query_async(&mut c).await;
                    if pong.is_ok() {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The Lua script decides exactly as governor's GCRA on the same arrivals: both run
/// on 200 random arrival sequences (times in whole microseconds, passed to the script
/// as its clock), over rates whose period is a whole number of microseconds.
#[tokio::test]
async fn the_lua_script_decides_as_governor_on_the_same_arrivals() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let mut connection = redis.connection().await;
    let script = GcraScript::default();
    let mut rng = rand::rngs::StdRng::seed_from_u64(21);
    let mut compared = 0;
    let timer = Instant::now();
    for sequence in 0..200 {
        let rate: u32 = [1, 2, 4, 5, 10, 20, 50, 1000][rng.random_range(0..8)];
        let burst: u32 = rng.random_range(1..=12);
        let params = BucketParams::new(rate, burst);
        let clock = FakeRelativeClock::default();
        let governor = RateLimiter::direct_with_clock(
            Quota::per_second(rate.try_into().unwrap()).allow_burst(burst.try_into().unwrap()),
            clock.clone(),
        );
        let tenant = format!("seq{sequence}");
        let start_us: u64 = 1_700_000_000_000_000 + sequence * 1_000_000_000;
        let mut at_us = 0u64;
        for _ in 0..60 {
            at_us += rng.random_range(0..=params.period_us * 2);
            clock.advance(Duration::from_micros(at_us) - clock_now(&clock));
            let expected = match governor.check() {
                Ok(()) => ScriptAnswer::Now,
                Err(not_until) => ScriptAnswer::OverRate(
                    not_until.wait_time_from(governor::clock::Clock::now(&clock)),
                ),
            };
            let got = script
                .admit(
                    &mut connection,
                    &tenant,
                    params,
                    None,
                    Duration::ZERO,
                    Some(start_us + at_us),
                )
                .await
                .unwrap();
            assert_eq!(
                got, expected,
                "rate {rate} burst {burst}, arrival at {at_us} µs of sequence {sequence}"
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 200 * 60);
    eprintln!(
        "one EVALSHA round trip (debug build, loopback): {:?}",
        timer.elapsed() / compared
    );

    // The reservation shape mode makes: a burst of 1 at 10/s reserves turns 100 ms
    // apart, and refuses one beyond max_wait without reserving it.
    let params = BucketParams::new(10, 1);
    let now = 1_800_000_000_000_000;
    let mut answers = Vec::new();
    for _ in 0..4 {
        let answer = script
            .admit(
                &mut connection,
                "shape",
                params,
                None,
                Duration::from_millis(250),
                Some(now),
            )
            .await
            .unwrap();
        answers.push(answer);
    }
    assert_eq!(
        answers,
        [
            ScriptAnswer::Now,
            ScriptAnswer::Reserved(Duration::from_millis(100)),
            ScriptAnswer::Reserved(Duration::from_millis(200)),
            ScriptAnswer::OverRate(Duration::from_millis(300)),
        ]
    );
    // A back-off holds every request until it ends.
    script
        .back_off(&mut connection, "shape", Duration::from_secs(5), Some(now))
        .await
        .unwrap();
    let held = script
        .admit(
            &mut connection,
            "shape",
            params,
            None,
            Duration::ZERO,
            Some(now + 1_000_000),
        )
        .await
        .unwrap();
    assert_eq!(held, ScriptAnswer::BackedOff(Duration::from_secs(4)));

    // A Redis that lost its scripts (restarted, SCRIPT FLUSH) answers EVALSHA with
    // NOSCRIPT; the script is loaded again and the call still answers.
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .unwrap();
    let again = script
        .admit(
            &mut connection,
            "shape",
            params,
            None,
            Duration::ZERO,
            Some(now + 1_000_000),
        )
        .await
        .unwrap();
    assert_eq!(again, ScriptAnswer::BackedOff(Duration::from_secs(4)));
}

fn clock_now(clock: &FakeRelativeClock) -> Duration {
    use governor::clock::{Clock, Reference};
    let now = clock.now();
    now.duration_since(governor::nanos::Nanos::from(0u64))
        .into()
}

/// A proxy of its own (not [`TestProxy`]) so the test can read its metrics.
struct Replica {
    addr: SocketAddr,
    metrics: Metrics,
    readiness: scimguard::admin::Readiness,
    pipeline: std::sync::Arc<scimguard::pipeline::Pipeline>,
    _stop: oneshot::Sender<()>,
}

async fn replica(upstream: &str, store: &str, mode: ThrottleMode) -> Replica {
    replica_with(RunArgs {
        upstream: Some(upstream.to_owned()),
        rate: Some(10),
        burst: Some(10),
        throttle: Some(mode),
        throttle_store: Some(store.to_owned()),
        throttle_store_failure: Some(StoreFailure::Local),
        replicas: Some(2),
        ..RunArgs::default()
    })
    .await
}

async fn replica_with(args: RunArgs) -> Replica {
    let config = Config::from_run_args(&args).unwrap();
    let proxy = Proxy::from_config(&config).unwrap();
    let metrics = proxy.metrics.clone();
    let pipeline = proxy.pipeline.clone();
    let readiness = proxy.readiness.clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(proxy.serve(listener, async {
        let _ = stopped.await;
    }));
    Replica {
        addr,
        metrics,
        readiness,
        pipeline,
        _stop: stop,
    }
}

/// Sends GETs to both replicas, alternating, every `every`, for `how_long`; returns
/// how many answers were 2xx and 429 (anything else fails the test).
async fn hammer(replicas: &[&Replica], how_long: Duration, every: Duration) -> (usize, usize) {
    let client = http_client();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut i = 0usize;
    while start.elapsed() < how_long {
        let addr = replicas[i % replicas.len()].addr;
        let client = client.clone();
        tasks.spawn(async move {
            let request = Request::builder()
                .method(Method::GET)
                .uri(format!("http://{addr}/t-1/scim/v2/Users/u{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client, request).await.0
        });
        i += 1;
        tokio::time::sleep(every).await;
    }
    let (mut ok, mut throttled) = (0, 0);
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            s if s.is_success() => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("answered {other}"),
        }
    }
    (ok, throttled)
}

fn gauge(metrics: &Metrics, store: &str) -> bool {
    let line = format!("scimguard_throttle_store{{store=\"{store}\"}} 1");
    metrics.render().lines().any(|l| l == line)
}

/// Two replicas at --rate 10 --burst 10 on one store admit, together, what one budget
/// allows (10 + 10 per second) within 15 %; with the store killed both go on answering
/// 2xx or 429 on their local share; restarted, they share one budget again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_one_budget_and_survive_the_store() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let a = replica(&upstream.url(), &redis.url(), ThrottleMode::Reject).await;
    let b = replica(&upstream.url(), &redis.url(), ThrottleMode::Reject).await;
    let run = Duration::from_secs(5);
    let start = Instant::now();
    // 100 requests per second over both: five times the budget.
    let (ok, throttled) = hammer(&[&a, &b], run, Duration::from_millis(10)).await;
    let seconds = start.elapsed().as_secs_f64();
    let budget = 10.0 + 10.0 * seconds;
    eprintln!("shared: {ok} admitted, {throttled} refused in {seconds:.2} s; one budget allows {budget:.0}");
    assert!(
        (ok as f64) <= budget * 1.15 && (ok as f64) >= budget * 0.85,
        "{ok} admitted, one budget allows {budget:.0}"
    );
    assert!(gauge(&a.metrics, "redis") && gauge(&b.metrics, "redis"));

    redis.kill();
    let (ok, throttled) =
        hammer(&[&a, &b], Duration::from_secs(3), Duration::from_millis(10)).await;
    eprintln!("store down: {ok} admitted, {throttled} refused");
    assert!(ok > 0 && throttled > 0, "{ok} {throttled}");
    // Each replica on its local share (5/s, burst 5): together under one budget.
    assert!((ok as f64) <= (10.0 + 10.0 * 3.0) * 1.15, "{ok}");
    for replica in [&a, &b] {
        // A dead store is not a reason to take the replica out of the load balancer.
        assert_eq!(replica.readiness.check(), Ok(()));
        assert!(
            gauge(&replica.metrics, "local"),
            "{}",
            replica.metrics.render()
        );
        let text = replica.metrics.render();
        assert!(
            text.contains("scimguard_throttle_store_errors_total"),
            "{text}"
        );
        assert!(
            text.lines()
                .any(|l| l
                    .starts_with("scimguard_throttle_store_fallbacks_total{decision=\"local\"}")),
            "{text}"
        );
    }

    redis.restart().await;
    // Within the breaker's second, both find the store again: a request now and then
    // lets each probe it.
    let client = http_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !(gauge(&a.metrics, "redis") && gauge(&b.metrics, "redis")) {
        assert!(
            Instant::now() < deadline,
            "the replicas never found the store again"
        );
        for replica in [&a, &b] {
            let request = Request::builder()
                .uri(format!("http://{}/t-1/scim/v2/Users/probe", replica.addr))
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client, request).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The shared bucket fills again (10 tokens at 10 per second) before measuring.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let start = Instant::now();
    let (ok, _) = hammer(&[&a, &b], run, Duration::from_millis(10)).await;
    let seconds = start.elapsed().as_secs_f64();
    let budget = 10.0 + 10.0 * seconds;
    eprintln!("shared again: {ok} admitted in {seconds:.2} s");
    assert!(gauge(&a.metrics, "redis") && gauge(&b.metrics, "redis"));
    assert!(
        (ok as f64) <= budget * 1.15 && (ok as f64) >= budget * 0.85,
        "{ok} admitted, one budget allows {budget:.0}"
    );
}

/// Shape mode waits its turn in the shared budget, and a 429 from the upstream at one
/// replica backs off the other too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shape_waits_and_one_replicas_429_backs_off_both() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let a = replica(&upstream.url(), &redis.url(), ThrottleMode::Shape).await;
    let b = replica(&upstream.url(), &redis.url(), ThrottleMode::Shape).await;
    let start = Instant::now();
    // 30 requests at once over both: 10 go now, 20 wait their turn (2 s at 10/s).
    let client = http_client();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let addr = [a.addr, b.addr][i % 2];
        let client = client.clone();
        tasks.spawn(async move {
            let request = Request::builder()
                .uri(format!("http://{addr}/t-1/scim/v2/Users/u{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client, request).await.0
        });
    }
    let (mut ok, mut throttled) = (0, 0);
    while let Some(status) = tasks.join_next().await {
        match status.unwrap() {
            s if s.is_success() => ok += 1,
            _ => throttled += 1,
        }
    }
    let elapsed = start.elapsed();
    assert_eq!((ok, throttled), (30, 0));
    assert!(
        elapsed >= Duration::from_millis(1_300) && elapsed < Duration::from_secs(6),
        "{elapsed:?}"
    );

    // AWS's 429 (Retry-After: 2) answered to replica c holds replica d's next request:
    // the back-off is shared (shape mode waits it out within --max-wait).
    let aws = crate::throttle::Scripted::start(crate::throttle::throttled_once).await;
    let c = replica(&aws.url(), &redis.url(), ThrottleMode::Shape).await;
    let d = replica(&aws.url(), &redis.url(), ThrottleMode::Shape).await;
    let get = |addr: SocketAddr| {
        Request::builder()
            .uri(format!("http://{addr}/t-2/scim/v2/Users/x"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let (status, ..) = send(&client, get(c.addr)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    // The back-off is written in the background, within the store's 50 ms.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let (status, ..) = send(&client, get(d.addr)).await;
    assert!(status.is_success(), "{status}");
    assert!(
        start.elapsed() >= Duration::from_millis(1_500),
        "replica d did not back off: {:?}",
        start.elapsed()
    );
}

/// The blast-radius guard's state lives in the store: deletions through two replicas
/// add up to one limit, a trip at one holds the other, and a release at one frees both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_state_is_shared_by_replicas() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let args = || RunArgs {
        upstream: Some(upstream.url()),
        throttle_store: Some(redis.url()),
        guard_deletes: Some(3),
        ..RunArgs::default()
    };
    let a = replica_with(args()).await;
    let b = replica_with(args()).await;
    let client = http_client();
    let delete = |addr: SocketAddr, n: usize| {
        Request::builder()
            .method(Method::DELETE)
            .uri(format!("http://{addr}/t-3/scim/v2/Users/u{n}"))
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    let mut statuses = Vec::new();
    for n in 0..5 {
        let addr = [a.addr, b.addr][n % 2];
        statuses.push(send(&client, delete(addr, n)).await.0.as_u16());
    }
    // The test upstream answers 201 to anything it gets.
    assert_eq!(statuses, [201, 201, 201, 503, 503]);
    let guard_b = b.pipeline.guard().unwrap();
    let status = guard_b.status().await;
    assert_eq!(status["shared"], true);
    assert_eq!(status["tenants"]["t-3"]["trip"]["held"], 2, "{status}");

    a.pipeline.guard().unwrap().release("t-3").await.unwrap();
    assert_eq!(send(&client, delete(b.addr, 9)).await.0.as_u16(), 201);
}

/// While the store does not answer, `deny` answers 503 with Retry-After and `allow`
/// admits: never a 429 (nothing is over a rate) nor a 500, and no request waits long.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_store_is_answered_by_the_failure_mode_never_429_or_500() {
    // A port nobody listens on: the store refuses every connection.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!(
            "redis://127.0.0.1:{}/0",
            listener.local_addr().unwrap().port()
        )
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    let client = http_client();
    for (failure, expected) in [
        (StoreFailure::Deny, StatusCode::SERVICE_UNAVAILABLE),
        (StoreFailure::Allow, StatusCode::CREATED),
    ] {
        let r = replica_with(RunArgs {
            upstream: Some(upstream.url()),
            rate: Some(1),
            burst: Some(1),
            throttle: Some(ThrottleMode::Reject),
            throttle_store: Some(dead.clone()),
            throttle_store_failure: Some(failure),
            ..RunArgs::default()
        })
        .await;
        let start = Instant::now();
        for i in 0..20 {
            let request = Request::builder()
                .uri(format!("http://{}/t-4/scim/v2/Users/u{i}", r.addr))
                .body(Full::new(Bytes::new()))
                .unwrap();
            let (status, headers, body, _) = send(&client, request).await;
            assert_eq!(status, expected, "{failure}: {body:?}");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                assert!(headers.contains_key("retry-after"));
                let detail = String::from_utf8_lossy(&body);
                assert!(detail.contains("--throttle-store-failure"), "{detail}");
            }
        }
        // The breaker: one request in a second waits for the store, not all twenty.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert!(
            gauge(&r.metrics, failure.as_str()),
            "{}",
            r.metrics.render()
        );
    }
}

/// Observe mode on the shared budget delays nothing and reports what shape mode would
/// have done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_on_the_shared_budget_delays_nothing() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let upstream = TestUpstream::start(Behaviour::Answer).await;
    // One token per second, so a loaded machine spreading the 30 requests over a
    // second or two changes the count by one or two at most.
    let args = || RunArgs {
        upstream: Some(upstream.url()),
        rate: Some(1),
        burst: Some(10),
        throttle: Some(ThrottleMode::Observe),
        throttle_store: Some(redis.url()),
        ..RunArgs::default()
    };
    let a = replica_with(args()).await;
    let b = replica_with(args()).await;
    // Each replica connects and loads the script as it starts; give that a moment.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let client = http_client();
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let addr = [a.addr, b.addr][i % 2];
        let client = client.clone();
        tasks.spawn(async move {
            let request = Request::builder()
                .uri(format!("http://{addr}/t-5/scim/v2/Users/u{i}"))
                .body(Full::new(Bytes::new()))
                .unwrap();
            send(&client, request).await.0
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert!(status.unwrap().is_success());
    }
    let elapsed = start.elapsed();
    // Shape mode would have taken 20 s for the 20 beyond the burst.
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    let count = |outcome: &str| -> f64 {
        let start = format!("scimguard_throttle_total{{outcome=\"{outcome}\"}}");
        [&a, &b]
            .iter()
            .filter_map(|r| {
                r.metrics
                    .render()
                    .lines()
                    .find(|l| l.starts_with(&start))
                    .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            })
            .sum()
    };
    let (would_wait, would_refuse) = (count("would_wait"), count("would_refuse"));
    // 10 fit the burst (plus one per second elapsed); of the others, those whose turn
    // is within --max-wait (10 s) would have waited, the rest been refused.
    assert_eq!(count("admitted") + would_wait + would_refuse, 30.0);
    let refilled = elapsed.as_secs_f64().ceil();
    assert!(
        would_wait >= 9.0 - refilled && would_wait + would_refuse >= 20.0 - refilled,
        "{would_wait} {would_refuse} in {elapsed:?}"
    );
}
