//! Phase 8 for a change that takes more than one upstream request: the follow-up
//! batches of a split member change, and the reads and writes of a repair. Each
//! request is throttled and forwarded as any other.

use super::*;

impl Pipeline {
    /// Phase 6 for a change AWS refuses: [`crate::repair`] reads the group's members and
    /// sends the adds and removes AWS takes, each request throttled ([`Self::throttle`])
    /// and forwarded ([`Self::forward`]) as any other.
    pub(super) async fn repair(
        &self,
        outbound: &Outbound,
        classified: &crate::scim::Classified,
        body: &Bytes,
        exchange: &mut Exchange,
    ) -> Response<Body> {
        exchange.verdict = Outcome::Rewritten;
        let job = crate::repair::Job {
            operation: classified.operation,
            prefix: &classified.prefix,
            group_id: classified.id.as_deref().unwrap_or_default(),
            body,
        };
        let mut findings = std::mem::take(&mut exchange.findings);
        let mut io = RepairSend {
            pipeline: self,
            outbound,
            exchange,
        };
        let response = self.repairer.run(&mut io, job, &mut findings).await;
        exchange.findings = findings;
        response
    }

    /// Sends the follow-up PATCHes of a split request one after another, after the first
    /// request succeeded. On a failure, the answer is the upstream's error with a
    /// `detail` saying exactly which requests (and members) were applied and which not.
    pub(super) async fn forward_batches(
        &self,
        outbound: &Outbound,
        prefix: &str,
        first: Response<Body>,
        batches: Vec<Batch>,
        exchange: &mut Exchange,
    ) -> Result<Response<Body>, Error> {
        if !first.status().is_success() {
            return Ok(first);
        }
        let total = batches.len() + 1;
        let (first, first_body) = buffered(first, MAX_RESPONSE_BYTES).await?;
        let path = match batches[0].target {
            BatchTarget::SameResource => outbound.path_and_query.path().to_owned(),
            BatchTarget::CreatedGroup => {
                let id = serde_json::from_slice::<Value>(&first_body)
                    .ok()
                    .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_owned));
                match id {
                    Some(id) => format!("{prefix}/Groups/{}", percent_encode_segment(&id)),
                    None => {
                        let detail = format!(
                            "scimguard created the group with its first 100 members, but the upstream's answer has no group id, so the remaining {} batch(es) of members were not added: {}",
                            batches.len(),
                            pending_members(&batches, 0)
                        );
                        return Ok(scim_response(&ScimError::new(502, detail)));
                    }
                }
            }
        };
        let path = PathAndQuery::try_from(path).map_err(|e| {
            ErrorKind::Internal(format!(
                "cannot build the upstream path of the batches: {e}"
            ))
        })?;
        let created = batches[0].target == BatchTarget::CreatedGroup;
        let first = Response::from_parts(first, full(first_body));
        let mut last: Option<Response<Body>> = None;
        for (i, batch) in batches.iter().enumerate() {
            let body = Bytes::from(serde_json::to_vec(&batch.body).unwrap_or_default());
            let applied = i + 1;
            let report = |problem: String| {
                let done = if applied == 1 {
                    "Request 1 was applied".to_owned()
                } else {
                    format!("Requests 1 to {applied} were applied")
                };
                let problem = problem.trim_end_matches('.');
                format!(
                    "scimguard split this change into {total} requests to stay within AWS's limit of 100 members per request. {done}; request {} failed: {problem}. Not applied: {}",
                    applied + 1,
                    pending_members(&batches, i)
                )
            };
            let request = UpstreamRequest {
                method: Method::PATCH,
                target: &path,
                headers: outbound.headers.clone(),
                body,
                changed: true,
            };
            let sent = match self
                .throttle(&outbound.tenant, OpClass::Write, exchange)
                .await
            {
                Ok(()) => self.forward(request, &outbound.tenant, exchange).await,
                Err(refused) => Err(refused),
            };
            match sent {
                Ok(response) if response.status().is_success() => last = Some(response),
                Ok(response) => {
                    let status = response.status();
                    // An error answer: read whole already, by `forward`.
                    let (parts, body) = buffered(response, MAX_ERROR_BYTES).await?;
                    let upstream_detail = serde_json::from_slice::<Value>(&body)
                        .ok()
                        .and_then(|v| v.get("detail").and_then(Value::as_str).map(str::to_owned))
                        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
                    let detail =
                        report(format!("the upstream answered {status}: {upstream_detail}"));
                    let mut error = scim_response(&ScimError::new(status.as_u16(), detail));
                    for name in ["x-amzn-requestid", "retry-after"] {
                        if let Some(v) = parts.headers.get(name) {
                            error
                                .headers_mut()
                                .insert(HeaderName::from_static(name), v.clone());
                        }
                    }
                    return Ok(error);
                }
                Err(e) => {
                    // The same answer as that error alone (status, Retry-After and
                    // ThrottlingException wording for a local 429), with the report of
                    // what was applied in front of its detail.
                    let own = match &e.kind {
                        ErrorKind::Throttled {
                            retry_after,
                            reason,
                        } => throttled_error(*retry_after, *reason).detail,
                        _ => e.detail(),
                    };
                    exchange.failed(&e);
                    let detail = format!("{} ({own})", report(e.to_string()));
                    let mut response = scim_response(&ScimError::new(e.status(), detail));
                    if let Some(retry) = error_response(&e).headers().get(RETRY_AFTER) {
                        response.headers_mut().insert(RETRY_AFTER, retry.clone());
                    }
                    return Ok(response);
                }
            }
        }
        // CreateGroup answers with the created group (201); PatchGroup with the last
        // batch's answer (204), as AWS would for one request.
        Ok(match last {
            Some(last) if !created => last,
            _ => first,
        })
    }
}

/// A repair's way to the upstream: [`Pipeline::send`] with the request's headers.
struct RepairSend<'a> {
    pipeline: &'a Pipeline,
    outbound: &'a Outbound,
    exchange: &'a mut Exchange,
}

impl crate::repair::RepairIo for RepairSend<'_> {
    async fn send(
        &mut self,
        method: Method,
        target: String,
        body: Option<Vec<u8>>,
        class: OpClass,
    ) -> Result<Response<Body>, Error> {
        let target = PathAndQuery::try_from(target)
            .map_err(|e| ErrorKind::Internal(format!("cannot build a repair request: {e}")))?;
        let tenant = self.outbound.tenant.as_str();
        self.pipeline.throttle(tenant, class, self.exchange).await?;
        let request = UpstreamRequest {
            method,
            target: &target,
            headers: self.outbound.headers.clone(),
            body: Bytes::from(body.unwrap_or_default()),
            changed: true,
        };
        self.pipeline.forward(request, tenant, self.exchange).await
    }

    async fn admit_removals(&mut self, removed: u32) -> Option<Response<Body>> {
        let guard = self.pipeline.guard.as_ref()?;
        let changes = crate::guard::Changes {
            removed_members: removed,
            ..Default::default()
        };
        let operation = self
            .exchange
            .operation
            .unwrap_or(crate::scim::Operation::PatchGroup);
        let path = self.outbound.path_and_query.path();
        let held = guard
            .check_changes(&self.outbound.tenant, operation, path, changes)
            .await?;
        Some(held_response(&held, self.exchange))
    }
}

/// The member ids of batches `from..`, for a failure report.
fn pending_members(batches: &[Batch], from: usize) -> String {
    batches[from..]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            format!(
                "request {} (members {})",
                from + i + 2,
                b.member_ids.join(", ")
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}
