"""The riskstream Grafana dashboard, built from code with grafana-foundation-sdk.

    python -m stream.ops.monitoring.dashboard \
        > stream/ops/monitoring/grafana/dashboards/riskstream.json

Grafana provisions the committed JSON (``grafana/provisioning/dashboards/riskstream.yml``);
``tests/stream/test_monitoring.py`` fails when it differs from this module's output, so edit
here and regenerate. Every panel queries the provisioned Prometheus datasource
(``DATASOURCE_UID``) and only series in ``WORKER_METRICS``, of the worker's job, or in
``EXPORTER_METRICS``, of the Kafka exporter's (broker-side consumer-group lag).
"""

from __future__ import annotations

import json
import sys

from stream.ops.monitoring import DATASOURCE_UID, EXPORTER_JOB, JOB

try:
    from grafana_foundation_sdk.builders import common as common_builder
    from grafana_foundation_sdk.builders import dashboard as dash
    from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.models import common
    from grafana_foundation_sdk.models import dashboard as model
    from grafana_foundation_sdk.models.prometheus import PromQueryFormat
except ModuleNotFoundError as exc:  # the generator is an extra; the worker never needs it
    if __name__ != "__main__" or (exc.name or "").split(".")[0] != "grafana_foundation_sdk":
        raise
    raise SystemExit(
        "error: python -m stream.ops.monitoring.dashboard needs the monitoring extra: "
        "pip install 'riskstream[monitoring]'"
    ) from None

UID = "riskstream-worker"
TITLE = "riskstream worker"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
# Every selector: the worker job, narrowed by the dashboard's instance variable.
SEL = f'job="{JOB}", instance=~"$instance"'
# The Kafka exporter's series: the consumer group chosen by the dashboard's group variable.
GROUP_SEL = f'job="{EXPORTER_JOB}", consumergroup=~"$group"'
#: The group the compose workers join (RISKSTREAM_TOPIC_PREFIX + RISKSTREAM_APP_ID).
DEFAULT_GROUP = "riskstream"
RATE = "$__rate_interval"


def _query(expr: str, legend: str = "", ref: str = "A", *, instant: bool = False):
    q = prometheus.Dataquery().expr(expr).ref_id(ref).datasource(DATASOURCE)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant().format(PromQueryFormat.TABLE)
    return q


def _refs(queries: list[tuple[str, str]]):
    return [_query(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(queries)]


def _legend():
    return (
        common_builder.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max", "lastNotNull"])
    )


def _timeseries(title: str, description: str, queries: list[tuple[str, str]], unit: str, w=12):
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .min(0)
        .height(8)
        .span(w)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend())
    )
    for q in _refs(queries):
        panel = panel.with_target(q)
    return panel


def _thresholds(*steps: tuple[float | None, str]):
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=v, color=c) for v, c in steps])
    )


def _stat(title: str, description: str, expr: str, unit: str, thresholds, legend="", w=4):
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .with_target(_query(expr, legend))
        .unit(unit)
        .height(4)
        .span(w)
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(thresholds)
    )


def _ready_panel():
    mapping = model.ValueMap(
        options={
            "0": model.ValueMappingResult(text="not ready", color="red", index=0),
            "1": model.ValueMappingResult(text="ready", color="green", index=1),
        }
    )
    return (
        stat.Panel()
        .title("Ready")
        .description(
            "riskstream_worker_ready per worker: model loaded, partitions assigned, table "
            "recovery done."
        )
        .datasource(DATASOURCE)
        .with_target(
            _query(f"max by (instance) (riskstream_worker_ready{{{SEL}}})", "{{instance}}")
        )
        .mappings([mapping])
        .height(4)
        .span(4)
        .graph_mode(common.BigValueGraphMode.NONE)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_builder.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(_thresholds((None, "red"), (1, "green")))
    )


def _model_table():
    organize = model.DataTransformerConfig(
        id_val="organize",
        options={
            "excludeByName": {"Time": True, "Value": True},
            "indexByName": {"instance": 0, "backend": 1, "precision": 2, "version": 3},
        },
    )
    return (
        table.Panel()
        .title("Model")
        .description(
            "riskstream_model_info: the backend, precision and model version per worker and "
            "route (english, multilingual)."
        )
        .datasource(DATASOURCE)
        .with_target(
            _query(
                "max by (instance, route, backend, precision, version) "
                f"(riskstream_model_info{{{SEL}}})",
                instant=True,
            )
        )
        .with_transformation(organize)
        .height(8)
        .span(12)
    )


def _quantiles(metric: str, what: str) -> list[tuple[str, str]]:
    return [
        (
            f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{SEL}}}[{RATE}])))",
            f"{what} p{round(q * 100)}",
        )
        for q in (0.5, 0.99)
    ]


def build() -> model.Dashboard:
    instance = (
        dash.QueryVariable("instance")
        .label("worker")
        .datasource(DATASOURCE)
        .query(f'label_values(up{{job="{JOB}"}}, instance)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )
    group = (
        dash.QueryVariable("group")
        .label("consumer group")
        .description("The workers' consumer group, for the broker-side lag (kafka-exporter).")
        .datasource(DATASOURCE)
        .query(f'label_values(kafka_consumergroup_lag{{job="{EXPORTER_JOB}"}}, consumergroup)')
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .current(model.VariableOption(selected=True, text=DEFAULT_GROUP, value=DEFAULT_GROUP))
    )
    broker_lag = f"sum by (topic) (kafka_consumergroup_lag{{{GROUP_SEL}}})"
    consumed = f"sum(rate(riskstream_stream_events_consumed_total{{{SEL}}}[{RATE}]))"
    scored = f"sum(rate(riskstream_stream_scored_events_total{{{SEL}}}[{RATE}]))"
    lag = f"max by (topic, partition) (riskstream_stream_consumer_lag{{{SEL}}})"
    green = _thresholds((None, "green"))
    builder = (
        dash.Dashboard(TITLE)
        .uid(UID)
        .description(
            "Throughput, lag, latency, model batching, errors and alerts of the riskstream "
            "workers. Generated by stream/ops/monitoring/dashboard.py: do not edit in Grafana."
        )
        .tags(["riskstream"])
        .readonly()
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .with_variable(instance)
        .with_variable(group)
        # Overview
        .with_row(dash.Row("Overview"))
        .with_panel(
            _stat(
                "Workers up",
                "Worker targets Prometheus scrapes successfully (up).",
                f"sum(up{{{SEL}}})",
                "none",
                _thresholds((None, "red"), (1, "green")),
            )
        )
        .with_panel(_ready_panel())
        .with_panel(_stat("In", "Input records consumed per second.", consumed, "reqps", green))
        .with_panel(_stat("Out", "Scored events published per second.", scored, "reqps", green))
        .with_panel(
            _stat(
                "Consumer lag",
                "Records behind the end of the input topics, all partitions.",
                f"sum({lag})",
                "short",
                _thresholds((None, "green"), (1000, "orange"), (10000, "red")),
            )
        )
        .with_panel(
            _stat(
                "Restarts",
                "Worker restarts in the time range (changes of process_start_time_seconds).",
                f"sum(changes(process_start_time_seconds{{{SEL}}}[$__range]))",
                "none",
                _thresholds((None, "green"), (1, "orange"), (3, "red")),
            )
        )
        # Throughput and lag
        .with_row(dash.Row("Throughput and lag"))
        .with_panel(
            _timeseries(
                "Throughput in / out",
                "Input records consumed per second, per input topic and in all, against scored "
                "events published per second.",
                [
                    (
                        "sum by (topic) "
                        f"(rate(riskstream_stream_events_consumed_total{{{SEL}}}[{RATE}]))",
                        "in: {{topic}}",
                    ),
                    (consumed, "in: all"),
                    (scored, "out: scored events"),
                ],
                "reqps",
            )
        )
        .with_panel(
            _timeseries(
                "Consumer lag",
                "Records behind the end of each input partition (riskstream_stream_consumer_lag) "
                "and their sum. A partition's lag is reported by the worker that owns it.",
                [(f"sum({lag})", "all partitions"), (lag, "{{topic}}/{{partition}}")],
                "short",
            )
        )
        .with_panel(
            _timeseries(
                "Consumer lag (broker)",
                "Records behind the end of each topic the consumer group reads, as the broker "
                "sees it: the log end minus the group's committed offset (kafka_consumergroup_lag, "
                "from kafka-exporter). Unlike the workers' own gauge it stays, and grows, while "
                "every worker is down; it runs ahead of that gauge by what is processed but not "
                "committed yet.",
                [(f"sum({broker_lag})", "all topics"), (broker_lag, "{{topic}}")],
                "short",
                w=24,
            )
        )
        .with_panel(
            _timeseries(
                "Table recovery remaining",
                "Changelog records a worker still has to read per table partition "
                "(riskstream_table_recovery_remaining): active ones keep it not ready, standby "
                "ones are the warm copies that make a failover short.",
                [
                    (
                        f"sum by (instance, table, kind) "
                        f"(riskstream_table_recovery_remaining{{{SEL}}})",
                        "{{instance}} {{table}} {{kind}}",
                    )
                ],
                "short",
            )
        )
        .with_panel(
            _timeseries(
                "Table state",
                "Keys held per table and worker, active and standby partitions "
                "(riskstream_table_keys; memory:// store).",
                [(f"riskstream_table_keys{{{SEL}}}", "{{instance}} {{table}}")],
                "short",
            )
        )
        # Latency
        .with_row(dash.Row("Latency"))
        .with_panel(
            _timeseries(
                "End-to-end latency",
                "Input record timestamp to scored event produced, p50 and p99 over all workers.",
                _quantiles("riskstream_stream_e2e_latency_seconds", "e2e"),
                "s",
            )
        )
        .with_panel(
            _timeseries(
                "In flight",
                "Events admitted but not yet published, per worker (bounded by backpressure).",
                [(f"sum by (instance) (riskstream_stream_in_flight{{{SEL}}})", "{{instance}}")],
                "short",
            )
        )
        # Model
        .with_row(dash.Row("Model"))
        .with_panel(
            _timeseries(
                "Batch size",
                "Texts per model batch: mean and p99 over all workers, against the largest "
                "batch the backend takes.",
                [
                    (
                        f"sum(rate(riskstream_model_batch_size_sum{{{SEL}}}[{RATE}])) / "
                        f"sum(rate(riskstream_model_batch_size_count{{{SEL}}}[{RATE}]))",
                        "mean",
                    ),
                    (
                        "histogram_quantile(0.99, sum by (le) "
                        f"(rate(riskstream_model_batch_size_bucket{{{SEL}}}[{RATE}])))",
                        "p99",
                    ),
                    (f"max(riskstream_model_max_batch_size{{{SEL}}})", "max batch size"),
                ],
                "short",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Batch fill",
                "Mean batch size / max batch size, per worker: near 100 % the model is the "
                "bottleneck; low fill at high lag points elsewhere.",
                [
                    (
                        "sum by (instance) "
                        f"(rate(riskstream_model_batch_size_sum{{{SEL}}}[{RATE}]))"
                        " / sum by (instance) "
                        f"(rate(riskstream_model_batch_size_count{{{SEL}}}[{RATE}]))"
                        " / max by (instance) "
                        f"(riskstream_model_max_batch_size{{{SEL}}})",
                        "{{instance}}",
                    )
                ],
                "percentunit",
                w=8,
            ).max(1)
        )
        .with_panel(
            _timeseries(
                "Inference time per batch",
                "Tokenise + inference per batch (riskstream_model_batch_latency_seconds), p50 "
                "and p99 over all workers.",
                _quantiles("riskstream_model_batch_latency_seconds", "batch"),
                "s",
                w=8,
            )
        )
        .with_panel(_model_table())
        .with_panel(
            _timeseries(
                "Rebalances",
                "Consumer group rebalances per worker, in each interval.",
                [
                    (
                        "sum by (instance) "
                        f"(increase(riskstream_worker_rebalances_total{{{SEL}}}[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                "short",
            )
        )
        # Shadow scoring (empty unless RISKSTREAM_SHADOW_BACKEND / _MODEL_VERSION is set)
        .with_row(dash.Row("Shadow scoring"))
        .with_panel(
            _timeseries(
                "Champion / challenger agreement",
                "Share of compared texts on which the shadow challenger decides as the champion "
                "does, per head: the label (P >= 0.5) and the alert (its threshold). Promote a "
                "build when these hold near 100 % on live traffic.",
                [
                    (
                        "sum by (head, decision) "
                        f'(rate(riskstream_shadow_decisions_total{{{SEL},agree="true"}}[{RATE}]))'
                        " / sum by (head, decision) "
                        f"(rate(riskstream_shadow_decisions_total{{{SEL}}}[{RATE}]))",
                        "{{head}} {{decision}}",
                    )
                ],
                "percentunit",
                w=8,
            ).max(1)
        )
        .with_panel(
            _timeseries(
                "Champion - challenger score difference",
                "|champion - challenger| per head (riskstream_shadow_score_abs_diff), p50 and p99.",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, head) "
                        f"(rate(riskstream_shadow_score_abs_diff_bucket{{{SEL}}}[{RATE}])))",
                        f"{{{{head}}}} p{round(q * 100)}",
                    )
                    for q in (0.5, 0.99)
                ],
                "short",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Shadow coverage",
                "Texts the challenger compared per second, and those it skipped by reason "
                "(behind: it cannot keep up and never holds the champion back), with the "
                "build it runs (riskstream_shadow_model_info).",
                [
                    (f"sum(rate(riskstream_shadow_scored_total{{{SEL}}}[{RATE}]))", "compared"),
                    (
                        f"sum by (reason) (rate(riskstream_shadow_dropped_total{{{SEL}}}[{RATE}]))",
                        "skipped: {{reason}}",
                    ),
                    (
                        "count by (backend, version, precision) "
                        f"(riskstream_shadow_model_info{{{SEL}}})",
                        "challenger {{backend}} {{version}} {{precision}} (workers)",
                    ),
                ],
                "short",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Operator labels and registry changes",
                "Valid labels analysts sent per second by head and value (invalid ones are "
                "dead letters), and model-registry changes the workers acted on: new champions "
                "(switched, failed) and challengers (shadowed, unshadowed, shadow_failed).",
                [
                    (
                        f"sum by (head, value) (rate(riskstream_labels_received_total{{{SEL}}}"
                        f"[{RATE}]))",
                        "labels {{head}}={{value}}",
                    ),
                    (
                        "sum by (route, outcome) "
                        f"(increase(riskstream_model_champion_switches_total{{{SEL}}}[{RATE}]))",
                        "registry {{route}} {{outcome}}",
                    ),
                ],
                "short",
                w=8,
            )
        )
        # Errors and alerts
        .with_row(dash.Row("Errors and alerts"))
        .with_panel(
            _timeseries(
                "Alerts by type",
                "Alerts published per second, by alert type.",
                [
                    (
                        "sum by (alert_type) "
                        f"(rate(riskstream_stream_alerts_total{{{SEL}}}[{RATE}]))",
                        "{{alert_type}}",
                    )
                ],
                "reqps",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Dead letters by reason",
                "Records sent to the dead-letter topic per second, by reason.",
                [
                    (
                        "sum by (reason) "
                        f"(rate(riskstream_stream_dead_letters_total{{{SEL}}}[{RATE}]))",
                        "{{reason}}",
                    )
                ],
                "reqps",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Processing errors by stage",
                "Events that failed inside a stage (dead-lettered as processing_error) per "
                "second, by stage.",
                [
                    (
                        "sum by (stage) "
                        f"(rate(riskstream_stream_processing_errors_total{{{SEL}}}[{RATE}]))",
                        "{{stage}}",
                    )
                ],
                "reqps",
                w=8,
            )
        )
        .with_panel(
            _timeseries(
                "Worker restarts",
                "Restarts per worker in each interval (changes of process_start_time_seconds).",
                [
                    (
                        f"sum by (instance) (changes(process_start_time_seconds{{{SEL}}}[{RATE}]))",
                        "{{instance}}",
                    )
                ],
                "short",
            )
        )
        .with_panel(
            _timeseries(
                "Workers up",
                "Scrape success per worker (1 up, 0 down).",
                [(f"max by (instance) (up{{{SEL}}})", "{{instance}}")],
                "short",
            )
        )
    )
    built = builder.build()
    # Unique panel ids (the builder leaves them unset, rows at 0): Grafana links and
    # "view panel" URLs use them.
    for number, panel in enumerate(built.panels or [], start=1):
        panel.id_val = number
    return built


def render() -> str:
    """The dashboard as Grafana JSON, byte-stable (sorted keys, trailing newline)."""
    return json.dumps(build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
