//! What the context stage adds to an alert: where the exec ran and its container and pod
//! as the runtimes name them, written into the text as it is written (the fast path).
//! On a `Value`, [`augment`] plus `t1609_context::write_ecs` stay the definition; the
//! agent's `tests/alert_text.rs` checks that both give the same document.

use serde_json::Value;
use t1609_context::{ContainerInfo, Meta};
use t1609_detect::{AlertFields, Members};

use super::{ExecContext, augment};

/// The context of one exec, for its alerts.
pub struct ExecFields<'a> {
    ctx: &'a ExecContext,
    session_leader: Option<u32>,
    /// The runtimes' answer on the cgroup's container; `None` outside a container.
    meta: Option<Meta>,
}

impl<'a> ExecFields<'a> {
    /// `meta` is the runtimes' answer on `ctx`'s container (`None` when the cgroup names
    /// none).
    pub fn new(ctx: &'a ExecContext, session_leader: Option<u32>, meta: Option<Meta>) -> Self {
        debug_assert_eq!(meta.is_some(), ctx.cgroup.container_id.is_some());
        Self {
            ctx,
            session_leader,
            meta,
        }
    }

    /// The container whose metadata the alert says is pending: a late answer gets a
    /// follow-up.
    pub fn pending_container(&self) -> Option<&str> {
        match self.meta {
            Some(Meta::Pending(_)) => self.ctx.cgroup.container_id.as_deref(),
            _ => None,
        }
    }

    fn known(&self) -> Option<&ContainerInfo> {
        self.meta.as_ref().and_then(Meta::known).map(|i| &**i)
    }
}

impl AlertFields for ExecFields<'_> {
    fn add_to_value(&self, doc: &mut Value) {
        augment(doc, self.ctx, self.session_leader);
        if let Some(meta) = &self.meta {
            t1609_context::write_ecs(doc, meta, self.ctx.cgroup.pod_uid.as_deref());
        }
    }

    fn container_id(&self) -> Option<&str> {
        self.known()
            .map(|i| &*i.id)
            .or(self.ctx.cgroup.container_id.as_deref())
    }

    fn container(&self, c: &mut Members<'_>) {
        // Every alert names its container, if only as `{}`.
        c.touch();
        let runtime = self.ctx.cgroup.runtime;
        if let Some(info) = self.known() {
            info.write_ecs_container(c);
        } else if runtime.is_container() {
            c.str("runtime", runtime.as_str());
        }
    }

    fn t1609(&self, t: &mut Members<'_>) {
        let ctx = self.ctx;
        t.bool("in_container", ctx.in_container);
        t.objects("ancestry", &ctx.ancestry, |o, a| {
            o.num("pid", u64::from(a.pid));
            o.str("name", &a.name);
            o.str_or_null("executable", a.executable.as_deref());
        });
        t.opt_str("systemd_unit", ctx.cgroup.systemd_unit.as_deref());
        if let Some(leader) = self.session_leader {
            t.num("session_leader_pid", u64::from(leader));
        }
        if let Some(meta) = &self.meta {
            t.object("metadata", |m| match meta {
                Meta::Known(info) => {
                    m.bool("pending", false);
                    m.str("source", info.source);
                }
                Meta::Pending(reason) => {
                    m.bool("pending", true);
                    m.str("reason", &reason.to_string());
                }
            });
        }
    }

    fn top(&self, doc: &mut Members<'_>) {
        let known = self.known();
        let named_pod = known.is_some_and(|i| i.write_ecs_orchestrator(doc));
        if !named_pod && let Some(uid) = self.ctx.cgroup.pod_uid.as_deref() {
            // A pod the runtime has not named (yet): what the cgroup says, marked pending;
            // with the container known to the cgroup, its uid is the resource's id too.
            let with_id = self.meta.is_some();
            doc.object("orchestrator", |o| {
                o.str("type", "kubernetes");
                o.object("resource", |r| {
                    r.str("type", "pod");
                    r.str("uid", uid);
                    if with_id {
                        r.str("id", uid);
                    }
                });
                o.bool("metadata_pending", true);
            });
        }
        if let Some(name) = known
            .and_then(|i| i.pod.as_ref())
            .and_then(|p| p.container_name.as_deref())
        {
            doc.object("kubernetes", |k| {
                k.object("container", |c| c.str("name", name));
            });
        }
    }
}
