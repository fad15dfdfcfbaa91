//! Extension scopes: `engine.extensions`, `groups.<g>.extensions` and a pipeline's own. A
//! binding resolves innermost first; an id hiding an outer one is a warning naming both; an
//! outer extension is one instance for its whole scope (every pipeline, every core), starts
//! before and stops after everything inside it, also when the start fails.

#![allow(clippy::expect_used, clippy::unwrap_used)] // a failed expectation is a test failure

use std::time::Duration;

use otap_df_core::config::ConfigErrors;
use otap_df_core::resolve::{ResolvedConfig, Scope, ScopeKey, load_with_env};
use otap_df_core::runtime::{
    Engine, EngineError, ExtensionState, Failure, ReloadOutcome, RunOptions,
};
use otap_df_tests::engine::{self, Started};
use otap_df_tests::recording::{self, events};

fn load(text: &str) -> Result<ResolvedConfig, ConfigErrors> {
    let registry = recording::registry_with(otap_df_nodes::register);
    load_with_env(text, "scopes.yaml", &registry, &|_| None)
}

fn resolve(text: &str) -> ResolvedConfig {
    load(text).unwrap_or_else(|errors| panic!("invalid test configuration:\n{errors}"))
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("the configuration was accepted"),
        Err(errors) => errors.errors.iter().map(ToString::to_string).collect(),
    }
}

fn run(text: &str, cores: usize) -> Result<(), EngineError> {
    let options = RunOptions {
        cores: Some(cores),
        shutdown_timeout: Duration::from_secs(5),
        ..RunOptions::default()
    };
    Engine::new(resolve(text), options).run()
}

/// A passive recorder (no task): an extension that only provides capabilities.
const PASSIVE: &str = "{ type: extension:recorder, config: { log: unused, behaviour: passive } }";

/// The one configuration of the resolution tests: `tokens` at the engine, in group `g` and in
/// pipeline `g/p`; `g/q` and `h/r` declare none; `store` only at the engine.
fn layered() -> String {
    format!(
        "version: otap_df/v1
engine:
  extensions:
    tokens: {PASSIVE}
    store: {PASSIVE}
groups:
  g:
    extensions:
      tokens: {PASSIVE}
    pipelines:
      p:
        extensions:
          tokens: {PASSIVE}
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: unused, count: 1 }}, capabilities: {{ bearer_token_provider: tokens, key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
      q:
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: unused, count: 1 }}, capabilities: {{ bearer_token_provider: tokens }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
  h:
    pipelines:
      r:
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: unused, count: 1 }}, capabilities: {{ bearer_token_provider: tokens }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
"
    )
}

#[test]
fn a_binding_resolves_to_the_innermost_scope_that_declares_the_id() {
    let text = layered();
    let resolved = resolve(&text);
    let pipeline = |name: &str| {
        resolved
            .pipelines
            .iter()
            .position(|p| p.name == name)
            .unwrap()
    };
    let scope_of = |name: &str, id: &str| {
        resolved
            .binding_scope(pipeline(name), id)
            .map(|key| resolved.scope(key))
    };
    // p's own, then g's, then the engine's.
    assert_eq!(
        scope_of("p", "tokens"),
        Some(Scope::Pipeline("g".into(), "p".into()))
    );
    assert_eq!(scope_of("q", "tokens"), Some(Scope::Group("g".into())));
    assert_eq!(scope_of("r", "tokens"), Some(Scope::Engine));
    assert_eq!(scope_of("p", "store"), Some(Scope::Engine));
    // Each declaration knows its consumers, across pipelines for an outer one.
    let consumers = |key: ScopeKey, id: &str| -> Vec<String> {
        resolved
            .extensions_of(key)
            .iter()
            .find(|e| e.id == id)
            .map(|e| {
                e.consumers
                    .iter()
                    .map(|c| format!("{}.{} {}", c.pipeline, c.node, c.capability))
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(
        consumers(ScopeKey::Outer(0), "tokens"),
        ["h/r.src bearer_token_provider"]
    );
    assert_eq!(
        consumers(ScopeKey::Outer(0), "store"),
        ["g/p.src key_value_store"]
    );
    assert_eq!(
        consumers(ScopeKey::Outer(1), "tokens"),
        ["g/q.src bearer_token_provider"]
    );
    assert_eq!(
        consumers(ScopeKey::Pipeline(pipeline("p")), "tokens"),
        ["g/p.src bearer_token_provider"]
    );
    // Outer extensions always run one shared instance.
    assert!(
        resolved
            .scopes
            .iter()
            .flat_map(|s| &s.extensions)
            .all(|e| e.execution == otap_df_core::extension::ExecutionModel::Shared)
    );
}

#[test]
fn an_id_that_hides_an_outer_one_is_a_warning_naming_both() {
    let text = layered();
    let warnings: Vec<String> = resolve(&text)
        .warnings
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        warnings,
        [
            "9:7: at `groups.g.extensions.tokens`: extension `tokens` of group `g` shadows \
             `tokens` of the engine (line 4:5): nodes of group `g` that bind `tokens` get this one",
            "13:11: at `groups.g.pipelines.p.extensions.tokens`: extension `tokens` of pipeline \
             `g/p` shadows `tokens` of group `g` (line 9:7): nodes of pipeline `g/p` that bind \
             `tokens` get this one",
        ]
    );
}

#[test]
fn an_unknown_id_lists_the_ids_of_every_enclosing_scope() {
    let text = layered().replace(
        "capabilities: { bearer_token_provider: tokens }",
        "capabilities: { bearer_token_provider: tokns }",
    );
    let errors = errors(&text);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(
        errors[0],
        "20:102: at `groups.g.pipelines.q.nodes.src.capabilities.bearer_token_provider`: node \
         `src` binds `bearer_token_provider` to extension `tokns`, which neither this pipeline, \
         its group nor the engine declares; declared extensions: `tokens`, `store` \
         (did you mean `tokens`?)"
    );
    assert!(
        errors[1].contains("declared extensions: `tokens`, `store`"),
        "{}",
        errors[1]
    );
}

#[test]
fn an_extension_that_runs_one_instance_per_core_is_refused_at_an_outer_scope() {
    let text = "version: otap_df/v1
engine:
  extensions:
    local: { type: extension:local_recorder, config: { log: unused, behaviour: passive } }
groups:
  g:
    extensions:
      per_core: { type: extension:memory_kv, config: { per_core: true } }
    pipelines:
      p:
        nodes:
          src: { type: receiver:recording_source, config: { log: unused, count: 1 }, capabilities: { bearer_token_provider: local, key_value_store: per_core } }
          out: { type: exporter:noop }
        connections: [ { from: src, to: out } ]
";
    assert_eq!(
        errors(text),
        [
            "4:14: at `engine.extensions.local.type`: extension `local` \
             (extension:local_recorder) has a local variant only (one instance per core), and an \
             extension of the engine is one instance for all of its pipelines and cores; declare \
             it in each pipeline's `extensions:` instead",
            "8:19: at `groups.g.extensions.per_core.type`: extension `per_core` \
             (extension:memory_kv) runs one instance per core with this configuration, and an \
             extension of group `g` is one instance for all of its pipelines and cores; declare \
             it in each pipeline's `extensions:` instead",
        ]
    );
}

#[test]
fn an_outer_extension_no_node_binds_is_a_warning_and_left_out() {
    let text = format!(
        "version: otap_df/v1
engine:
  extensions:
    idle: {PASSIVE}
groups:
  g:
    pipelines:
      p:
        nodes:
          src: {{ type: receiver:generator, config: {{ count: 1 }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
"
    );
    let resolved = resolve(&text);
    assert!(resolved.scopes[0].extensions.is_empty());
    let warnings: Vec<String> = resolved.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "4:5: at `engine.extensions.idle`: extension `idle` is not bound by any node and will not be started"
        ]
    );
}

/// Two pipelines on `cores` cores: `eng` at the engine (token provider of both sources),
/// `grp` in group `g` (store of `q`'s source), `loc` local in `p` (store of `p`'s source).
fn scoped_run(log: &str, grp: &str) -> String {
    let recorder = |kind: &str, behaviour: &str| {
        format!(
            "{{ type: extension:{kind}, startup_timeout: 500ms, config: {{ log: {log}, {behaviour} }} }}"
        )
    };
    let eng = recorder("recorder", "behaviour: ready");
    let grp = recorder("recorder", grp);
    let loc = recorder("local_recorder", "behaviour: ready");
    format!(
        "version: otap_df/v1
engine:
  extensions:
    eng: {eng}
groups:
  g:
    extensions:
      grp: {grp}
    pipelines:
      p:
        extensions:
          loc: {loc}
        nodes:
          src_p: {{ type: receiver:recording_source, config: {{ log: {log}, count: 3 }}, capabilities: {{ bearer_token_provider: eng, key_value_store: loc }} }}
          sink_p: {{ type: exporter:recording_sink, config: {{ log: {log}, ignore_store: true }} }}
        connections: [ {{ from: src_p, to: sink_p }} ]
      q:
        nodes:
          src_q: {{ type: receiver:recording_source, config: {{ log: {log}, count: 3 }}, capabilities: {{ bearer_token_provider: eng, key_value_store: grp }} }}
          sink_q: {{ type: exporter:recording_sink, config: {{ log: {log}, ignore_store: true }} }}
        connections: [ {{ from: src_q, to: sink_q }} ]
"
    )
}

fn count(events: &[String], event: &str) -> usize {
    events.iter().filter(|e| *e == event).count()
}

fn first(events: &[String], event: &str) -> usize {
    events
        .iter()
        .position(|e| e == event)
        .unwrap_or_else(|| panic!("no `{event}` in {events:?}"))
}

fn last(events: &[String], event: &str) -> usize {
    events
        .iter()
        .rposition(|e| e == event)
        .unwrap_or_else(|| panic!("no `{event}` in {events:?}"))
}

#[test]
fn an_outer_extension_is_one_instance_for_every_pipeline_and_core_and_wraps_the_inner_ones() {
    let log = "scopes-graceful";
    run(&scoped_run(log, "behaviour: ready"), 2).expect("the run ends well");
    let events = events(log);
    // One instance per scope: the engine's and the group's once, the pipeline's local one
    // per core.
    assert_eq!(count(&events, "eng:start"), 1, "{events:?}");
    assert_eq!(count(&events, "grp:start"), 1, "{events:?}");
    assert_eq!(count(&events, "loc:start"), 2, "{events:?}");
    assert_eq!(count(&events, "eng:stop"), 1, "{events:?}");
    assert_eq!(count(&events, "grp:stop"), 1, "{events:?}");
    assert_eq!(count(&events, "loc:stop"), 2, "{events:?}");
    // Outer first: the engine's is ready before the group's starts, which is ready before
    // any of the pipeline's starts.
    assert!(
        first(&events, "eng:ready") < first(&events, "grp:start"),
        "{events:?}"
    );
    assert!(
        last(&events, "grp:ready") < first(&events, "loc:start"),
        "{events:?}"
    );
    let first_node = events
        .iter()
        .position(|e| e.starts_with("src_") || e.starts_with("sink_"))
        .unwrap();
    let last_node = events
        .iter()
        .rposition(|e| e.starts_with("src_") || e.starts_with("sink_"))
        .unwrap();
    // Cores run on their own: one may be done before the other starts, so the pipeline's
    // local instances bracket the nodes per core (as `runtime.rs` tests); across scopes:
    assert!(first(&events, "loc:ready") < first_node, "{events:?}");
    // Inner last: nodes, then the pipeline's, then the group's, then the engine's.
    assert!(last_node < last(&events, "loc:stop"), "{events:?}");
    assert!(
        last(&events, "loc:stop") < first(&events, "grp:stop"),
        "{events:?}"
    );
    assert!(
        first(&events, "grp:stop") < first(&events, "eng:stop"),
        "{events:?}"
    );
    // Both pipelines ran on both cores: 3 records per source per core.
    assert_eq!(count(&events, "sink_p:finish 3"), 2, "{events:?}");
    assert_eq!(count(&events, "sink_q:finish 3"), 2, "{events:?}");
}

#[test]
fn when_a_group_extension_is_not_ready_the_engine_one_still_stops_last_and_no_node_starts() {
    let log = "scopes-not-ready";
    let failures = match run(&scoped_run(log, "behaviour: never_ready"), 2) {
        Ok(()) => panic!("the run succeeded"),
        Err(error) => error.0,
    };
    assert_eq!(
        failures,
        [Failure::ReadinessTimeout {
            pipeline: "group:g".into(),
            extension: "grp".into(),
            timeout: Duration::from_millis(500),
            reason: None,
        }]
    );
    assert_eq!(
        failures[0].to_string(),
        "extension `grp` of group `g` was not ready within its startup_timeout of 500ms; \
         nodes were not started"
    );
    let events = events(log);
    assert!(
        !events
            .iter()
            .any(|e| e.starts_with("src_") || e.starts_with("loc:")),
        "nothing inside the group started: {events:?}"
    );
    assert_eq!(
        events,
        [
            "eng:start",
            "eng:ready",
            "grp:start",
            "grp:stop",
            "eng:stop"
        ]
    );
}

/// An engine running `text` on one core, past `event` of log `log`.
fn spawn(text: &str, log: &str, event: &str) -> Started {
    let started = engine::start(engine::one_core(resolve(text)));
    assert!(
        recording::wait_for(log, event, Duration::from_secs(10)),
        "no `{event}`: {:?}",
        events(log)
    );
    started
}

/// Group `g` with a `memory_kv` (`store`, config `store`), pipeline `g/p` binding it; `more`
/// adds pipelines.
fn reload_config(log: &str, store: &str, more: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    extensions:
      store: {{ type: extension:memory_kv, config: {store} }}
    pipelines:
      p:
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }}, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
{more}"
    )
}

#[test]
fn a_reload_adds_and_removes_pipelines_and_replaces_a_group_extension_that_cannot_update() {
    let log = "scopes-reload";
    let started = spawn(
        &reload_config(log, "{ max_entries: 10 }", ""),
        log,
        "src:start",
    );
    let reload = started.reload.clone();
    // The same configuration: nothing to do.
    let same = reload
        .reload(resolve(&reload_config(log, "{ max_entries: 10 }", "")))
        .unwrap();
    assert!(same.unchanged(), "{same:?}");
    // memory_kv does not take a new config in place: the group's store gets a new instance,
    // ready before the pipeline that binds it is replaced by a version bound to it; the new
    // pipeline binds the new store too.
    let more = format!(
        "      q:
        nodes:
          src_q: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }}, capabilities: {{ key_value_store: store }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src_q, to: out }} ]
"
    );
    let outcome = reload
        .reload(resolve(&reload_config(log, "{ max_entries: 20 }", &more)))
        .unwrap();
    assert_eq!(
        outcome,
        ReloadOutcome {
            added: vec!["pipeline `g/q`".into()],
            replaced: vec![
                "extension `store` of group `g`".into(),
                "pipeline `g/p`".into()
            ],
            ..ReloadOutcome::default()
        }
    );
    assert!(
        recording::wait_for(log, "src:shutdown", Duration::from_secs(10)),
        "the old version of g/p stopped: {:?}",
        events(log)
    );
    assert_eq!(count(&events(log), "src:start"), 2);
    // The store again as it was: both pipelines bind it, both are replaced.
    let outcome = reload
        .reload(resolve(&reload_config(log, "{ max_entries: 10 }", &more)))
        .unwrap();
    assert_eq!(
        outcome.replaced,
        [
            "extension `store` of group `g`",
            "pipeline `g/p`",
            "pipeline `g/q`"
        ],
        "{outcome:?}"
    );
    assert!(
        recording::wait_for(log, "src_q:start", Duration::from_secs(10)),
        "{:?}",
        events(log)
    );
    // And stops again, draining, while `g/p` goes on.
    let outcome = reload
        .reload(resolve(&reload_config(log, "{ max_entries: 10 }", "")))
        .unwrap();
    assert_eq!(outcome.removed, ["pipeline `g/q`"]);
    assert!(outcome.replaced.is_empty(), "{outcome:?}");
    // Two versions of `g/q` ran; both stop.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&events(log), "src_q:shutdown") < 2 {
        assert!(std::time::Instant::now() < deadline, "{:?}", events(log));
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
    // `g/p` goes on: of its three versions, the two replaced ones stopped.
    let now = events(log);
    assert_eq!(
        (count(&now, "src:start"), count(&now, "src:shutdown")),
        (3, 2),
        "{now:?}"
    );
    started.stop().expect("a clean end");
    assert_eq!(count(&events(log), "src:shutdown"), 3);
    // Once the run is over, a reload finds no engine.
    assert_eq!(
        reload.reload(resolve(&reload_config(log, "{ max_entries: 10 }", ""))),
        None
    );
}

#[test]
fn a_replaced_pipeline_drains_every_record_it_accepted_while_its_successor_runs() {
    let log = "scopes-replace";
    let config = |delay: &str| {
        format!(
            "version: otap_df/v1
groups:
  g:
    extensions:
      store: {{ type: extension:memory_kv }}
    pipelines:
      p:
        extensions:
          own: {{ type: extension:recorder, config: {{ log: {log}, behaviour: ready }} }}
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: {log}, count: 40, then: wait }}, capabilities: {{ key_value_store: store, bearer_token_provider: own }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log}, delay: {delay}, ignore_store: true }} }}
        connections: [ {{ from: src, to: sink }} ]
"
        )
    };
    let started = spawn(&config("5ms"), log, "src:sent 40");
    let reload = started.reload.clone();
    let telemetry = started.telemetry.clone();
    // 40 records accepted, the sink still working through them (5 ms each).
    let outcome = reload.reload(resolve(&config("1ms"))).unwrap();
    assert_eq!(outcome.replaced, ["pipeline `g/p`"], "{outcome:?}");
    assert!(
        recording::wait_for(log, "sink:finish 40", Duration::from_secs(10)),
        "the old version drained: {:?}",
        events(log)
    );
    // Once the old version is gone, its stopped instance no longer counts: ready.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while telemetry.readiness().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "not ready after the swap: {:?}",
            telemetry.readiness()
        );
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
    let states = telemetry.extension_states();
    let own: Vec<_> = states.iter().filter(|s| s.1 == "own").collect();
    assert_eq!(own.len(), 1, "{states:?}");
    assert_eq!(own[0].3, ExtensionState::Ready);
    started.stop().expect("a clean end");
    let events = events(log);
    // Old and new: each sent 40 and delivered 40; the new version's extension started
    // (and was ready) before the old one's stopped; the group's store served both.
    assert_eq!(count(&events, "src:sent 40"), 2, "{events:?}");
    assert_eq!(count(&events, "sink:finish 40"), 2, "{events:?}");
    assert_eq!(count(&events, "own:start"), 2, "{events:?}");
    assert!(
        last(&events, "own:ready") < first(&events, "own:stop"),
        "{events:?}"
    );
    assert_eq!(sink_in_out(&telemetry), (80, 80));
}

#[test]
fn a_new_version_that_does_not_start_leaves_the_old_one_running() {
    let log = "scopes-replace-fails";
    let config = |behaviour: &str| {
        format!(
            "version: otap_df/v1
groups:
  g:
    pipelines:
      p:
        extensions:
          own: {{ type: extension:recorder, startup_timeout: 200ms, config: {{ log: {log}, behaviour: {behaviour} }} }}
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }}, capabilities: {{ bearer_token_provider: own }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log} }} }}
        connections: [ {{ from: src, to: sink }} ]
"
        )
    };
    let started = spawn(&config("ready"), log, "src:sent 1");
    let reload = started.reload.clone();
    let telemetry = started.telemetry.clone();
    let outcome = reload.reload(resolve(&config("never_ready"))).unwrap();
    assert_eq!(
        outcome.failed,
        [
            "the new configuration did not start: extension `own` of pipeline `g/p` was not ready \
          within its startup_timeout of 200ms; nodes were not started"
        ]
    );
    assert!(outcome.replaced.is_empty());
    // The old version still runs, and the engine is ready: the failed instance is forgotten.
    assert_eq!(telemetry.readiness(), Ok(()));
    let events_now = events(log);
    assert_eq!(count(&events_now, "src:start"), 1, "{events_now:?}");
    assert!(!events_now.contains(&"src:shutdown".to_owned()));
    // A later reload to the same configuration finds nothing to do.
    assert!(
        reload
            .reload(resolve(&config("ready")))
            .unwrap()
            .unchanged()
    );
    started.stop().expect("a clean end");
}

/// An engine extension `tok` (a recorder; `tok_config` its options) bound by `g/p`'s
/// source, which sends 40 records to a slow sink; `g/q` binds nothing.
fn outer_replace_config(log: &str, tok_config: &str) -> String {
    format!(
        "version: otap_df/v1
engine:
  extensions:
    tok: {{ type: extension:recorder, startup_timeout: 300ms, config: {{ log: {log}, {tok_config} }} }}
groups:
  g:
    pipelines:
      p:
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: {log}, count: 40, then: wait }}, capabilities: {{ bearer_token_provider: tok }} }}
          sink: {{ type: exporter:recording_sink, config: {{ log: {log}, delay: 5ms }} }}
        connections: [ {{ from: src, to: sink }} ]
      q:
        nodes:
          src_q: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }} }}
          sink_q: {{ type: exporter:recording_sink, config: {{ log: {log} }} }}
        connections: [ {{ from: src_q, to: sink_q }} ]
"
    )
}

/// Telemetry shows one instance of extension `id`, ready.
fn shows_one_ready(telemetry: &otap_df_core::runtime::Telemetry, id: &str) {
    let states = telemetry.extension_states();
    let shown: Vec<_> = states.iter().filter(|s| s.1 == id).collect();
    assert_eq!(shown.len(), 1, "{states:?}");
    assert_eq!(shown[0].3, ExtensionState::Ready);
}

/// The records node `sink` took in and sent out, across its runs.
fn sink_in_out(telemetry: &otap_df_core::runtime::Telemetry) -> (u64, u64) {
    let sink = telemetry
        .node_totals()
        .into_iter()
        .find(|t| t.node == "sink")
        .unwrap();
    (sink.counts.records_in, sink.counts.records_out)
}

fn positions(events: &[String], event: &str) -> Vec<usize> {
    (0..events.len()).filter(|&i| events[i] == event).collect()
}

#[test]
fn an_engine_extension_a_reload_replaces_is_ready_before_its_consumers_switch_and_stops_after_they_drained()
 {
    let log = "scopes-outer-replace";
    let started = spawn(
        &outer_replace_config(log, "behaviour: ready"),
        log,
        "src:sent 40",
    );
    let reload = started.reload.clone();
    let telemetry = started.telemetry.clone();
    // The recorder takes no new config in place: a new instance, and `g/p`, which binds
    // it, replaced; `g/q` untouched.
    let outcome = reload
        .reload(resolve(&outer_replace_config(
            log,
            "behaviour: ready, ready_after: 50ms",
        )))
        .unwrap();
    assert_eq!(
        outcome,
        ReloadOutcome {
            replaced: vec![
                "extension `tok` of the engine".into(),
                "pipeline `g/p`".into()
            ],
            ..ReloadOutcome::default()
        }
    );
    assert!(
        recording::wait_for(log, "tok:stop", Duration::from_secs(10)),
        "the old instance stopped: {:?}",
        events(log)
    );
    // The status shows one `tok`, the new one, ready.
    shows_one_ready(&telemetry, "tok");
    assert_eq!(telemetry.readiness(), Ok(()));
    started.stop().expect("a clean end");

    let events = events(log);
    let (ready, started) = (
        positions(&events, "tok:ready"),
        positions(&events, "src:start"),
    );
    let (stopped, drained) = (
        positions(&events, "tok:stop"),
        positions(&events, "sink:finish 40"),
    );
    assert_eq!(
        (ready.len(), started.len(), stopped.len(), drained.len()),
        (2, 2, 2, 2),
        "{events:?}"
    );
    assert!(
        ready[1] < started[1],
        "the new instance was ready before the new version of g/p started: {events:?}"
    );
    assert!(
        drained[0] < stopped[0],
        "the old instance served the old version until it drained: {events:?}"
    );
    assert_eq!(count(&events, "src_q:start"), 1, "{events:?}");
    assert_eq!(sink_in_out(&telemetry), (80, 80));
}

#[test]
fn an_engine_extension_whose_new_instance_does_not_start_leaves_the_old_one_serving() {
    let log = "scopes-outer-replace-fails";
    let started = spawn(
        &outer_replace_config(log, "behaviour: ready"),
        log,
        "src:sent 40",
    );
    let reload = started.reload.clone();
    let telemetry = started.telemetry.clone();
    let outcome = reload
        .reload(resolve(&outer_replace_config(
            log,
            "behaviour: never_ready",
        )))
        .unwrap();
    assert_eq!(
        outcome.failed,
        [
            "the new configuration did not start: extension `tok` of the engine was not ready \
          within its startup_timeout of 300ms; nodes were not started"
        ]
    );
    assert!(outcome.replaced.is_empty(), "{outcome:?}");
    // The old instance and the old version of `g/p` go on; the failed instance is forgotten.
    assert_eq!(telemetry.readiness(), Ok(()));
    shows_one_ready(&telemetry, "tok");
    let now = events(log);
    assert_eq!(
        (count(&now, "src:start"), count(&now, "src:shutdown")),
        (1, 0),
        "{now:?}"
    );
    // The running configuration did not change: the same file again finds nothing to do.
    assert!(
        reload
            .reload(resolve(&outer_replace_config(log, "behaviour: ready")))
            .unwrap()
            .unchanged()
    );
    started.stop().expect("a clean end");
    assert_eq!(sink_in_out(&telemetry), (40, 40));
}

/// Group `g` with a `memory_kv` (`store`, config `store`); pipeline `g/p` whose extension
/// `front` binds `binds` (the group's `store` or the pipeline's own `back`), and whose source
/// binds `front`.
fn extension_binding_config(log: &str, store: &str, binds: &str) -> String {
    format!(
        "version: otap_df/v1
groups:
  g:
    extensions:
      store: {{ type: extension:memory_kv, config: {store} }}
    pipelines:
      p:
        extensions:
          front: {{ type: extension:local_recorder, config: {{ log: {log}, behaviour: ready }}, capabilities: {{ key_value_store: {binds} }} }}
          back: {{ type: extension:memory_kv }}
        nodes:
          src: {{ type: receiver:recording_source, config: {{ log: {log}, count: 1, then: wait }}, capabilities: {{ key_value_store: front }} }}
          out: {{ type: exporter:noop }}
        connections: [ {{ from: src, to: out }} ]
"
    )
}

#[test]
fn a_reload_replaces_the_pipeline_whose_extension_binds_a_replaced_or_rebound_extension() {
    let log = "scopes-extension-binding-reload";
    let started = spawn(
        &extension_binding_config(log, "{ max_entries: 10 }", "store"),
        log,
        "src:start",
    );
    let reload = started.reload.clone();
    // The group's store gets a new instance: the pipeline whose extension binds it is
    // replaced by one bound to the new instance.
    let outcome = reload
        .reload(resolve(&extension_binding_config(
            log,
            "{ max_entries: 20 }",
            "store",
        )))
        .unwrap();
    assert_eq!(
        outcome,
        ReloadOutcome {
            replaced: vec![
                "extension `store` of group `g`".into(),
                "pipeline `g/p`".into()
            ],
            ..ReloadOutcome::default()
        }
    );
    assert!(
        recording::wait_for(log, "src:shutdown", Duration::from_secs(10)),
        "{:?}",
        events(log)
    );
    // `front` now binds the pipeline's own store: the pipeline is replaced, and the group's
    // store, which nothing binds any more, goes.
    let outcome = reload
        .reload(resolve(&extension_binding_config(
            log,
            "{ max_entries: 20 }",
            "back",
        )))
        .unwrap();
    assert_eq!(
        outcome,
        ReloadOutcome {
            removed: vec!["extension `store` of group `g`".into()],
            replaced: vec!["pipeline `g/p`".into()],
            ..ReloadOutcome::default()
        }
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while count(&events(log), "front:binds") < 3 || count(&events(log), "src:start") < 3 {
        assert!(std::time::Instant::now() < deadline, "{:?}", events(log));
        // Sampling interval, not a wait for an outcome: the deadline bounds the loop.
        std::thread::sleep(Duration::from_millis(10));
    }
    started.stop().expect("a clean stop");
}
