//! THE flow of one request. Every phase is called from [`Pipeline::handle`] and
//! [`Pipeline::process`] in this order; nothing else knows the order.
//!
//! | # | phase     | here                                                                 |
//! |---|-----------|----------------------------------------------------------------------|
//! | 1 | accept    | [`crate::server`]: TCP → TLS → HTTP, one span per connection          |
//! | 1½ | authenticate | [`crate::auth::refusal`]: token isolation's 401, before the body |
//! | 2 | capture   | [`crate::target::check`], then [`capture_body`] under a size cap (413) and a time cap (408) |
//! | 3 | classify  | [`crate::scim::classify`]: method + path → `Operation`; query decoded |
//! | 4 | check     | [`RuleSet::evaluate`]: every rule of the operation → findings         |
//! | 5 | decide    | [`verdict::decide`]: findings × mode → forward, rewrite or reject     |
//! | 6 | rewrite / reject | the fixed body (and its batches), or an AWS-shaped error now  |
//! | 6′ | repair   | [`crate::repair`]: a group change AWS refuses, as adds and removes    |
//! | 6b | guard    | [`crate::guard::Guard::check`]: mass deletions held (503) until released |
//! | 7 | throttle  | [`Pipeline::throttle`]: after checking, so rejections spend no quota  |
//! | 8 | forward   | [`Pipeline::forward`]: to the configured upstream only (502/504)      |
//! | 9 | record    | [`Pipeline::record`]: with `--record`, the exchange, redacted         |
//! | 10 | explain  | [`crate::explain::log`]: on every path, the request's log line        |
//!
//! Whatever ends a request, [`Outcome`] names it once: the verdict's word, or
//! `held` / `throttled` / `error` from a later phase; the header, capture, log and metrics
//! all read it from the [`Exchange`].

mod follow_up;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{
    HeaderName, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE, EXPECT, HOST, RETRY_AFTER,
};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use serde_json::Value;
use tokio::sync::Semaphore;
use tracing::Instrument;

use crate::admin::Readiness;
use crate::batches::{Batch, BatchTarget};
use crate::config::{Config, Limits};
use crate::error::{Error, ErrorKind};
use crate::exchange::{ConnInfo, Exchange, REQUEST_ID_HEADER};
use crate::metrics::Metrics;
use crate::record::{ExchangeRecord, ReceivedRequest, RecordedRequest, Recorder};
use crate::redact::Secrets;
use crate::repair::Repairer;
use crate::rules::{Answer, Mode, RuleSet};
use crate::scim::error::ScimError;
use crate::throttle::{retry_after_header, throttled_error, Admission, OpClass, Throttle};
use crate::upstream::{
    remove_hop_by_hop, Upstream, UpstreamError, MAX_ERROR_BYTES, MAX_RESPONSE_BYTES,
};
use crate::verdict::{self, Judgement, Outcome, Verdict};

use crate::body::full;
/// The response body of the proxy: a whole buffer, or the upstream's answer streamed.
pub use crate::body::Body;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);
/// The [`Outcome`] (`forwarded`, `rewritten`, `rejected`, `throttled` or `error`), on
/// every response.
pub static VERDICT_HEADER: HeaderName = HeaderName::from_static("x-scimguard-verdict");
/// The ids of the rules that fired (in observe mode too), when any did.
pub static RULES_HEADER: HeaderName = HeaderName::from_static("x-scimguard-rules");

/// Everything a request needs, shared by all connections.
pub struct Pipeline {
    upstream: Upstream,
    limits: Limits,
    forwarded_headers: bool,
    /// Swapped whole by [`Pipeline::replace_rules`] (SIGHUP); a request keeps the set it
    /// started with (a heavy request takes it to its blocking thread).
    rules: std::sync::RwLock<Arc<RuleSet>>,
    mode: Mode,
    /// Heavy requests judged at once on blocking threads (see [`HEAVY_BODY_BYTES`]).
    heavy: Arc<Semaphore>,
    /// `None` when `--rate 0` turned local throttling off.
    throttle: Option<Throttle>,
    /// The blast-radius guard; `None` with `--guard-deletes 0`.
    guard: Option<crate::guard::Guard>,
    metrics: Metrics,
    readiness: Readiness,
    /// `--record`: every exchange, redacted, one JSON line each.
    recorder: Option<Recorder>,
    /// `--explain-log`: one JSON explanation per exchange.
    explain_log: Option<crate::explain::ExplainLog>,
    /// The live view on `--admin`: the last exchanges, kept in memory.
    view: Option<crate::admin::View>,
    /// Repairs of group changes AWS refuses, and the per-group locks.
    repairer: Repairer,
    /// Token isolation ([`crate::auth`]), when configured.
    tokens: Option<Arc<crate::auth::TokenIsolation>>,
    /// `--trusted-proxies`: whose `X-Forwarded-For` is kept.
    trusted_proxies: Vec<ipnet::IpNet>,
}

/// A request's parts once its target is checked, ready to send (maybe several times).
struct Outbound {
    method: Method,
    /// Path and query as received (batches replace the path).
    path_and_query: PathAndQuery,
    headers: HeaderMap,
    /// The tenant the throttle keys on (empty: the whole upstream).
    tenant: String,
    class: OpClass,
}

/// One request to the upstream: the client's, its rewrite, or one batch of a split
/// change.
struct UpstreamRequest<'a> {
    method: Method,
    target: &'a PathAndQuery,
    headers: HeaderMap,
    body: Bytes,
    /// The body is scimguard's (a rewrite or a batch): its Content-Length is the new
    /// body's, and the capture keeps what was sent.
    changed: bool,
}

impl Pipeline {
    /// The pipeline of a validated config, sending to `upstream`, counting into
    /// `metrics` and telling `readiness` when the upstream answers.
    pub fn new(
        upstream: Upstream,
        config: &Config,
        metrics: Metrics,
        readiness: Readiness,
        recorder: Option<Recorder>,
        explain_log: Option<crate::explain::ExplainLog>,
    ) -> Arc<Self> {
        // A store that cannot even be set up (a URL the config accepted) leaves this
        // replica on its own budget rather than unthrottled; the error says why.
        let throttle = config.throttle.enabled().then(|| {
            Throttle::with_store(
                config.throttle,
                config.throttle_store.as_ref(),
                Some(metrics.clone()),
            )
            .unwrap_or_else(|error| {
                tracing::error!("{error}; each replica throttles on its own");
                Throttle::new(config.throttle)
            })
        });
        if let Some(throttle) = &throttle {
            let queue = throttle.clone();
            metrics.queue_depth_from(move || queue.queue_depth());
        }
        readiness.rules_loaded(!config.rules.rules().is_empty());
        let guard = (config.guard.limit > 0).then(|| {
            crate::guard::Guard::new(
                &config.guard,
                config.mode == Mode::Observe,
                config.throttle_store.as_ref(),
                Some(metrics.clone()),
                recorder.clone(),
            )
        });
        Arc::new(Pipeline {
            guard,
            upstream,
            limits: config.limits,
            forwarded_headers: config.forwarded_headers,
            rules: std::sync::RwLock::new(Arc::new(config.rules.clone())),
            heavy: Arc::new(Semaphore::new(heavy_permits())),
            mode: config.mode,
            throttle,
            metrics,
            readiness,
            recorder,
            explain_log,
            view: crate::admin::View::from_config(config),
            repairer: Repairer::new(config.repair),
            tokens: config.token_isolation.clone(),
            trusted_proxies: config.trusted_proxies.clone(),
        })
    }

    /// The live view the admin listener shows, when there is one.
    pub fn view(&self) -> Option<&crate::admin::View> {
        self.view.as_ref()
    }

    /// Whether the exchange keeps what it received and sent, for the capture or the view.
    fn keeps_requests(&self) -> bool {
        self.recorder.is_some() || self.view.is_some()
    }

    /// The blast-radius guard, for the admin listener.
    pub fn guard(&self) -> Option<&crate::guard::Guard> {
        self.guard.as_ref()
    }

    /// The rules in effect.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Puts `rules` in effect for every request that starts from now on.
    pub fn replace_rules(&self, rules: RuleSet) {
        self.readiness.rules_loaded(!rules.rules().is_empty());
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(rules);
    }

    /// The credentials a call to the upstream on behalf of a request carries: the AWS
    /// token under token isolation, else the request's own `Authorization`.
    pub fn upstream_credentials(&self, request_headers: &HeaderMap) -> Option<HeaderValue> {
        crate::auth::upstream_credentials(self.tokens.as_deref(), request_headers)
    }

    /// Flushes and closes the capture and the explanation log: call after the server
    /// has drained, so every completed exchange is on disk.
    pub async fn close(&self) {
        if let Some(recorder) = &self.recorder {
            recorder.close().await;
        }
        if let Some(log) = &self.explain_log {
            log.close().await;
        }
    }

    /// Answers one request. Never fails: every error becomes an AWS-shaped SCIM error.
    pub async fn handle(&self, request: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let mut exchange = Exchange::start(request.method(), request.uri().path());
        exchange.observe = self.mode == Mode::Observe;
        // Every event of the request, its log line included, carries its id.
        let span = tracing::info_span!("request", id = %exchange.id);
        self.answer(request, conn, exchange).instrument(span).await
    }

    /// The phases of one request, from its capture to its explanation.
    async fn answer(
        &self,
        request: Request<Incoming>,
        conn: ConnInfo,
        mut exchange: Exchange,
    ) -> Response<Body> {
        // 2–8. capture … forward
        let response = match self.process(request, conn, &mut exchange).await {
            Ok(response) => response,
            Err(error) => {
                exchange.failed(&error);
                error_response(&error)
            }
        };
        let response = self.stamp(&mut exchange, response);
        self.hint(&mut exchange);
        // Before any output: no secret the request carried reaches the capture, the log,
        // the explanation log or the web view through a free text (hints quote AWS's
        // detail, so they are scrubbed too).
        crate::redact::scrub_exchange(&mut exchange);
        // the live view on --admin
        let response = match &self.view {
            Some(view) => view.observe(&exchange, response).await,
            None => response,
        };
        // 9. record
        let response = match &self.recorder {
            Some(recorder) => self.record(recorder, &mut exchange, response).await,
            None => response,
        };
        // 10. explain
        self.explain(&mut exchange);
        response
    }

    /// The answer to what hyper refused before it became a request ([`crate::unparsed`]):
    /// AWS-shaped, with a request id, counted and logged like any request.
    pub fn unparsed(&self, status: StatusCode) -> Vec<u8> {
        let id = crate::exchange::RequestId::new();
        let error = ScimError::new(status.as_u16(), crate::unparsed::detail(status));
        let blame = crate::error::Blame::Client;
        self.metrics.request("-", Outcome::Error.as_str());
        self.metrics.error(blame);
        let span = tracing::info_span!("request", id = %id);
        span.in_scope(|| {
            tracing::info!(
                target: "scimguard::request",
                method = "-",
                path = "-",
                operation = "-",
                verdict = %Outcome::Error.as_str(),
                status = status.as_u16(),
                blame = %blame.as_str(),
                error = error.detail.as_str(),
                "request"
            )
        });
        crate::unparsed::http1_answer(status, &id, &error)
    }

    /// Notes the answer's status and gives it the request id, the outcome and the rules
    /// that fired, whoever made it.
    fn stamp(&self, exchange: &mut Exchange, mut response: Response<Body>) -> Response<Body> {
        exchange.status = response.status().as_u16();
        let headers = response.headers_mut();
        headers.insert(REQUEST_ID.clone(), exchange.id.header_value());
        headers.insert(
            VERDICT_HEADER.clone(),
            HeaderValue::from_static(exchange.verdict.as_str()),
        );
        if let Some(ids) = verdict::fired_rules(&exchange.findings) {
            if let Ok(value) = HeaderValue::from_str(&ids) {
                headers.insert(RULES_HEADER.clone(), value);
            }
        }
        response
    }

    /// The explanation of a finished exchange: the rules' hints on the upstream's
    /// answer, the metrics, the log lines and the `--explain-log` line.
    /// What the rules that fired say about the upstream's answer, once, for every output.
    fn hint(&self, exchange: &mut Exchange) {
        if let Some(status) = exchange.upstream_status {
            let answer = Answer {
                status,
                detail: exchange.aws_detail.as_deref(),
                aws_request_id: exchange.aws_request_id.as_deref(),
            };
            exchange.hints = self.rules().hints(self.mode, &exchange.findings, answer);
        }
    }

    fn explain(&self, exchange: &mut Exchange) {
        self.count(exchange);
        crate::explain::log(exchange);
        if let Some(log) = &self.explain_log {
            log.write(exchange);
        }
    }

    /// Records the finished exchange and gives the response back unchanged. An answer
    /// over `--record-body-max-bytes` is recorded cut, with a marker, and still streams
    /// to the client whole.
    async fn record(
        &self,
        recorder: &Recorder,
        exchange: &mut Exchange,
        response: Response<Body>,
    ) -> Response<Body> {
        let cap = self.limits.record_body_max_bytes;
        let total = response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (parts, body) = response.into_parts();
        let (parts, head) = match crate::body::read_head(body, cap).await {
            Ok(head) => (parts, head),
            Err(e) => {
                // Nothing has reached the client yet: it gets the upstream's failure.
                let error = Error::from(crate::upstream::UpstreamError::Exchange {
                    upstream: self.upstream.url().to_string(),
                    reason: e.to_string(),
                });
                exchange.error = Some(error.to_string());
                exchange.blame = Some(error.blame());
                exchange.verdict = Outcome::Error;
                let (parts, _) = self.stamp(exchange, error_response(&error)).into_parts();
                let bytes = Bytes::from(ScimError::new(error.status(), error.detail()).to_json());
                (parts, crate::body::Head { bytes, rest: None })
            }
        };
        let recorded: crate::record::Body = match head.rest {
            Some(_) => crate::body::cut_for_record(&head.bytes, cap, total).into(),
            None => head.bytes.clone().into(),
        };
        // The exchange ends here: its recorded requests move into the record.
        let request = exchange.received.take().unwrap_or_else(|| ReceivedRequest {
            method: exchange.method.clone(),
            target: exchange.path.clone(),
            headers: HeaderMap::new(),
            body: crate::record::Body::default(),
        });
        let id = exchange.id.text();
        let time = crate::record::rfc3339_since(exchange.started);
        recorder.record_exchange(ExchangeRecord {
            id: id.as_str(),
            time: &time,
            tenant: exchange.tenant.as_deref(),
            operation: exchange.operation.map(|o| o.name()).unwrap_or("-"),
            mode: if exchange.observe {
                "observe"
            } else {
                "enforce"
            },
            verdict: exchange.verdict.as_str(),
            request,
            forwarded: std::mem::take(&mut exchange.forwarded),
            response: Some((parts.status.as_u16(), &parts.headers, recorded)),
            findings: &exchange.findings,
            error: exchange.error.as_deref(),
            timings: exchange.timings(),
        });
        Response::from_parts(parts, head.into_body())
    }

    /// Every 10 s (a third of /readyz's 30 s window) sends `GET` to the upstream URL's
    /// own path, without any token: any answer, even 401 or 404, shows the upstream is
    /// reachable, so /readyz stays true on a quiet proxy and turns false within 30 s of
    /// the upstream going away. Only the configured upstream is ever contacted.
    pub async fn probe_upstream_forever(self: Arc<Self>) {
        const PROBE_INTERVAL: Duration = Duration::from_secs(10);
        loop {
            let target = format!("{}/", self.upstream.url().base_path);
            let uri = target
                .parse()
                .ok()
                .and_then(|pq| self.upstream.url().join(&pq).ok());
            if let Some(uri) = uri {
                let mut request = Request::new(Full::new(Bytes::new()));
                *request.uri_mut() = uri;
                request
                    .headers_mut()
                    .insert(HOST, self.upstream.host().clone());
                if self.upstream.send(request).await.is_ok() {
                    self.readiness.mark_upstream_ok();
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }

    /// Metrics of one finished exchange.
    fn count(&self, exchange: &Exchange) {
        let metrics = &self.metrics;
        let operation = exchange.operation.map(|op| op.name()).unwrap_or("-");
        metrics.request(operation, exchange.verdict.as_str());
        for finding in &exchange.findings {
            metrics.finding(&finding.rule, finding.action.as_str());
        }
        if let Some(blame) = exchange.blame {
            metrics.error(blame);
        }
        if let Some(status) = exchange.upstream_status {
            metrics.upstream_status(status);
        }
        metrics.latency_total(exchange.started.elapsed());
        if let Some(upstream) = exchange.upstream_elapsed {
            metrics.latency_upstream(upstream);
        }
        if let Some(throttle) = exchange.throttle {
            metrics.throttle(throttle);
            metrics.throttle_wait(exchange.throttle_wait);
        }
    }

    /// Phases 2 to 8 of one request; `handle` explains whatever this returns.
    async fn process(
        &self,
        request: Request<Incoming>,
        conn: ConnInfo,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        let (parts, body) = request.into_parts();
        // 1½. authenticate: under token isolation, a request without a client token is
        // refused before its body is read or judged (crate::auth).
        if let Some(refusal) = crate::auth::refusal(self.tokens.as_deref(), &parts.headers) {
            exchange.verdict = Outcome::Rejected;
            return Ok(scim_response(&refusal));
        }
        // 2. capture: the target's own checks, then the body
        crate::target::check(&parts.uri)?;
        let body = capture_body(&parts, body, &self.limits).await?;
        if self.keeps_requests() {
            let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
            exchange.received = Some(ReceivedRequest {
                method: parts.method.clone(),
                target: target.to_owned(),
                headers: parts.headers.clone(),
                body: crate::record::Body::from(&body),
            });
        }
        let mut outbound = self.outbound(parts, conn)?;

        // 3–5. classify, check, decide
        let (judgement, secrets) = self.judge(&outbound, &body).await?;
        let classified = judgement.classified;
        exchange.tenant = classified.tenant().map(str::to_owned);
        exchange.operation = Some(classified.operation);
        exchange.secrets = secrets;
        exchange.findings = judgement.evaluation.findings;
        exchange.secrets.scrub_findings(&mut exchange.findings);
        exchange.verdict = Outcome::from(&judgement.verdict);
        outbound.tenant = exchange.tenant.clone().unwrap_or_default();
        outbound.class = OpClass::of(classified.operation, &outbound.method);

        // 6. rewrite / reject. Changes to one group wait while a repair of it runs.
        let _group = (self.repairer)
            .serialise(
                &outbound.tenant,
                classified.operation,
                classified.id.as_deref(),
            )
            .await;
        // The request as received, for the guard (counted before batches are split) and
        // the repair.
        let original = body;
        let (body, changed, batches) = match judgement.verdict {
            Verdict::Reject(mut error) => {
                exchange.secrets.scrub_string(&mut error.detail);
                return Ok(scim_response(&error));
            }
            Verdict::Forward => (original.clone(), false, Vec::new()),
            Verdict::Rewrite { body, batches } => (Bytes::from(body), true, batches),
        };

        // 6′. a group change AWS refuses is repaired instead: the group's members are
        // read and the adds and removes sent, each request throttled as any other. The
        // repair asks the guard itself, once it knows how many members it removes.
        let repair = (self.repairer).wanted(self.mode, classified.operation, &exchange.findings);

        // 6b. the blast-radius guard, after the verdict (a rejected request changes
        // nothing) and before the throttle (a held request spends no quota)
        if let Some(guard) = self.guard.as_ref().filter(|_| !repair) {
            let path = outbound.path_and_query.path();
            if let Some(held) = guard
                .check(&outbound.tenant, classified.operation, path, &original)
                .await
            {
                return Ok(held_response(&held, exchange));
            }
        }

        if repair {
            return Ok(Box::pin(self.repair(&outbound, &classified, &original, exchange)).await);
        }

        // 7. throttle, after checking, so rejected requests spend no quota
        self.throttle(&outbound.tenant, outbound.class, exchange)
            .await?;

        // 8. forward (a split change: the first request, then each batch)
        let headers = if batches.is_empty() {
            std::mem::take(&mut outbound.headers)
        } else {
            outbound.headers.clone()
        };
        let first = UpstreamRequest {
            method: outbound.method.clone(),
            target: &outbound.path_and_query,
            headers,
            body,
            changed,
        };
        let first = self.forward(first, &outbound.tenant, exchange).await?;
        if batches.is_empty() {
            return Ok(first);
        }
        self.forward_batches(&outbound, &classified.prefix, first, batches, exchange)
            .await
    }

    /// Phases 3 to 5: [`verdict::judge`]. A heavy body is judged on a blocking thread,
    /// at most [`heavy_permits`] at once, so the async workers keep answering small
    /// requests while big ones queue.
    async fn judge(
        &self,
        outbound: &Outbound,
        body: &Bytes,
    ) -> Result<(Judgement, Secrets), Error> {
        // Judging and collecting the request's secrets both read the whole body.
        fn both(
            rules: &RuleSet,
            mode: Mode,
            method: &str,
            target: &str,
            headers: &HeaderMap,
            body: &[u8],
        ) -> (Judgement, Secrets) {
            (
                verdict::judge(rules, mode, method, target, body),
                Secrets::of_request(target, headers, body),
            )
        }
        let (method, target) = (outbound.method.as_str(), outbound.path_and_query.as_str());
        if body.len() <= HEAVY_BODY_BYTES {
            return Ok(both(
                &self.rules(),
                self.mode,
                method,
                target,
                &outbound.headers,
                body,
            ));
        }
        let permit = self.heavy.clone().acquire_owned().await.map_err(|e| {
            ErrorKind::Internal(format!("the queue of heavy requests is closed: {e}"))
        })?;
        let (rules, mode, body) = (self.rules(), self.mode, body.clone());
        let (method, target) = (method.to_owned(), target.to_owned());
        let headers = outbound.headers.clone();
        tokio::task::spawn_blocking(move || {
            // Held until judged, even when the client has gone away meanwhile.
            let _permit = permit;
            both(&rules, mode, &method, &target, &headers, &body)
        })
        .await
        .map_err(|e| ErrorKind::Internal(format!("judging the request failed: {e}")).into())
    }

    /// Checks the request target and prepares the headers for the upstream: hop-by-hop
    /// headers out, the upstream's Host in, optional X-Forwarded-*.
    fn outbound(&self, parts: Parts, conn: ConnInfo) -> Result<Outbound, Error> {
        let path_and_query = parts
            .uri
            .path_and_query()
            .filter(|pq| pq.as_str().starts_with('/'))
            .ok_or_else(|| ErrorKind::NoPath(crate::redact::target(&parts.uri.to_string())))?
            .clone();
        let mut headers = parts.headers;
        remove_hop_by_hop(&mut headers);
        crate::auth::swap_token(self.tokens.as_deref(), &mut headers);
        // The client's Host names this proxy; the upstream's replaces it.
        let original_host = headers.insert(HOST, self.upstream.host().clone());
        // The whole body is already here, so there is nothing left to wait for.
        headers.remove(EXPECT);
        if self.forwarded_headers {
            add_forwarded_headers(
                &mut headers,
                conn,
                &self.trusted_proxies,
                original_host.or_else(|| authority_of(&parts.uri)),
            );
        }
        Ok(Outbound {
            method: parts.method,
            path_and_query,
            headers,
            tenant: String::new(),
            class: OpClass::Write,
        })
    }

    /// Takes a token for one request to the upstream (each batch takes its own). Shape
    /// mode waits here; a refusal is a 429 of scimguard's own, and the outcome
    /// `throttled`.
    async fn throttle(
        &self,
        tenant: &str,
        class: OpClass,
        exchange: &mut Exchange,
    ) -> Result<(), Error> {
        let Some(throttle) = &self.throttle else {
            return Ok(());
        };
        let admission = throttle.admit(tenant, class).await;
        exchange.throttle = Some(admission.label());
        exchange.throttle_wait += admission.waited();
        match admission {
            Admission::Refused {
                retry_after,
                reason,
            } => {
                exchange.verdict = Outcome::Throttled;
                Err(ErrorKind::Throttled {
                    retry_after,
                    reason,
                }
                .into())
            }
            _ => Ok(()),
        }
    }

    /// Sends one request to the configured upstream, whatever the client's target or
    /// Host said, and notes its answer in the exchange. A 429 makes `tenant` back off.
    async fn forward(
        &self,
        request: UpstreamRequest<'_>,
        tenant: &str,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        let UpstreamRequest {
            method,
            target,
            mut headers,
            body,
            changed,
        } = request;
        let uri = self
            .upstream
            .url()
            .join(target)
            .map_err(|e| ErrorKind::Internal(format!("cannot build the upstream URI: {e}")))?;
        if changed {
            headers.remove(CONTENT_LENGTH);
            if self.keeps_requests() {
                exchange.forwarded.push(RecordedRequest::new(
                    method.as_str(),
                    target.as_str(),
                    &headers,
                    &body,
                ));
            }
        }
        let mut request = Request::new(Full::new(body));
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;

        let answer = self.upstream.send(request).await?;
        exchange.upstream_elapsed =
            Some(exchange.upstream_elapsed.unwrap_or_default() + answer.elapsed);
        let status = answer.response.status();
        exchange.upstream_status = Some(status.as_u16());
        exchange.aws_request_id = answer
            .response
            .headers()
            .get("x-amzn-requestid")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        self.readiness.mark_upstream_ok();
        if status == StatusCode::TOO_MANY_REQUESTS {
            // Relayed as it is; the tenant's bucket waits out AWS's Retry-After.
            if let Some(throttle) = &self.throttle {
                exchange.upstream_back_off =
                    throttle.upstream_throttled(tenant, answer.response.headers());
            }
        }
        let (mut parts, body) = answer.response.into_parts();
        remove_hop_by_hop(&mut parts.headers);
        let body = if status.as_u16() >= 400 {
            // The explanation quotes an error's detail: error answers are read whole
            // (they are small).
            let bytes = self
                .upstream
                .whole(body, MAX_ERROR_BYTES, answer.deadline)
                .await?;
            exchange.aws_detail = serde_json::from_slice::<Value>(&bytes)
                .ok()
                .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned));
            full(bytes)
        } else {
            // Nothing needs the rest whole: it goes to the client as it arrives.
            self.upstream.stream(body, answer.deadline).boxed()
        };
        Ok(Response::from_parts(parts, body))
    }
}

/// Bodies over 64 KiB are judged off the async workers. A 100-member PatchGroup (AWS's
/// largest) is about 7 KB and judged in well under a millisecond; a 64 KiB body takes a
/// few milliseconds, and a 1 MiB one (10,000 members) tens of them, long enough to hold
/// every request behind it on a worker (issue 17 measured a small GET's p99 at 288 ms
/// while 8 such PATCHes ran inline).
pub const HEAVY_BODY_BYTES: usize = 64 * 1024;

/// Heavy requests judged at once: one fewer than the cores (at least one), so a core
/// stays free for the async workers and small requests keep their latency.
fn heavy_permits() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get().saturating_sub(1))
        .max(1)
}

/// Splits a response into its parts and body bytes, at most `limit` of them.
async fn buffered(
    response: Response<Body>,
    limit: usize,
) -> Result<(http::response::Parts, Bytes), Error> {
    let (parts, body) = response.into_parts();
    let head = crate::body::read_head(body, limit).await.map_err(|e| {
        ErrorKind::Upstream(UpstreamError::Exchange {
            upstream: String::from("the upstream"),
            reason: e.to_string(),
        })
    })?;
    if head.rest.is_some() {
        return Err(ErrorKind::Upstream(UpstreamError::TooLarge {
            upstream: String::from("the upstream"),
            limit,
        })
        .into());
    }
    Ok((parts, head.bytes))
}

/// Percent-encodes a path segment (ids AWS makes are `[0-9a-f-]`, but an upstream may
/// answer anything).
fn percent_encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads the whole request body within the body timeout (408 after it), refusing one
/// over the size cap before reading it when Content-Length already says so.
async fn capture_body(parts: &Parts, body: Incoming, limits: &Limits) -> Result<Bytes, Error> {
    let max_bytes = limits.max_body_bytes;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_bytes as u64) {
        return Err(ErrorKind::BodyTooLarge { limit: max_bytes }.into());
    }
    if hyper::body::Body::is_end_stream(&body) {
        return Ok(Bytes::new());
    }
    let read = tokio::time::timeout(limits.body_timeout, Limited::new(body, max_bytes).collect());
    let Ok(read) = read.await else {
        return Err(ErrorKind::BodyTimeout(limits.body_timeout).into());
    };
    match read {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(ErrorKind::BodyTooLarge { limit: max_bytes }.into())
        }
        Err(e) => Err(ErrorKind::BodyRead(e.to_string()).into()),
    }
}

fn authority_of(uri: &http::Uri) -> Option<HeaderValue> {
    uri.authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
}

/// X-Forwarded-For gets the client's address appended (it may already list earlier hops).
/// Earlier hops are kept only when the peer is one of `--trusted-proxies`: anyone else
/// could write any address there.
fn add_forwarded_headers(
    headers: &mut http::HeaderMap,
    conn: ConnInfo,
    trusted_proxies: &[ipnet::IpNet],
    host: Option<HeaderValue>,
) {
    let client_ip = conn.remote.ip().to_string();
    let peer_trusted = trusted_proxies
        .iter()
        .any(|net| net.contains(&conn.remote.ip()));
    let earlier = headers
        .get(&X_FORWARDED_FOR)
        .and_then(|v| v.to_str().ok())
        .filter(|_| peer_trusted);
    let forwarded_for = match earlier {
        Some(earlier) => format!("{earlier}, {client_ip}"),
        None => client_ip,
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    let proto = if conn.tls { "https" } else { "http" };
    headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST.clone(), host);
    }
}

/// The response for an error: its status and an AWS-shaped SCIM error body; a local
/// throttle refusal also says when to come back (`Retry-After`, whole seconds).
pub fn error_response(error: &Error) -> Response<Body> {
    if let ErrorKind::Throttled {
        retry_after,
        reason,
    } = &error.kind
    {
        let mut response = scim_response(&throttled_error(*retry_after, *reason));
        response.headers_mut().insert(
            RETRY_AFTER,
            HeaderValue::from(retry_after_header(*retry_after)),
        );
        return response;
    }
    scim_response(&ScimError::new(error.status(), error.detail()))
}

/// The answer to a request the blast-radius guard held: 503 in AWS's error shape,
/// `Retry-After`, recorded with the guard's text as the exchange's error.
fn held_response(held: &crate::guard::Held, exchange: &mut Exchange) -> Response<Body> {
    let error = held.error();
    exchange.verdict = Outcome::Held;
    exchange.error = Some(error.detail.clone());
    let mut response = scim_response(&error);
    response.headers_mut().insert(
        RETRY_AFTER,
        HeaderValue::from(crate::guard::HELD_RETRY_AFTER.as_secs()),
    );
    response
}

/// A SCIM error as a response, with the status it names.
pub fn scim_response(error: &ScimError) -> Response<Body> {
    let status = error
        .status
        .parse()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok());
    let mut response = Response::new(full(error.to_json()));
    *response.status_mut() = status.unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}
