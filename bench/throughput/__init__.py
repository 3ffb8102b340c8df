"""Throughput and latency of the permit-checker, against a raw aiokafka pipe on the same broker.

Run by hand (not a test) as ``bench/permit_throughput.py``; see bench/README.md. One run, on one
machine:

* infrastructure: a local Kafka cluster (`ptsp-gate broker`: librdkafka's mock cluster, or with
  ``--engine kafka`` Apache Kafka nodes in JVMs that are children of that process), and PostgreSQL
  from DATABASE_URL (a fresh database is created in it and dropped afterwards) or an
  EmbeddedPostgres in a temporary directory; migrations, then an enrolment projection for
  ``--employers`` NIBs loaded straight into the database (a fixed mix of states);
* N application events (``--events``) are produced once to the bench's applications topic;
* phase A (raw baseline, ``--skip-raw`` to leave out): a separate process consumes those N records
  in batches and re-produces each one to another topic, committing offsets per batch;
* phase B (throughput): ``ptsp-gate run permit-checker`` starts on the same N records (already
  waiting in the topic); decisions/s from the first decision published to the last. With
  ``--instances N`` (N > 1), N service processes share one consumer group: they are started on an
  input topic with nothing new for them, and the N events are produced again only once every
  instance is ready and holds its share of the partitions (no rebalance inside the window);
* phase C (latency, ``--skip-latency`` to leave out): with the service caught up, events at a
  fixed rate for ``--latency-seconds``, once per rate of ``--latency-rates``, one after the other;
  the latency of one event is its decision's CreateTime on the decisions topic minus its ce_time
  (= its send time). A plain consumer on the input topic measures the floor the broker alone
  imposes;
* the service (every instance, all at once) gets SIGTERM and must exit 0; a report is printed
  and saved as JSON under bench/results/ (the processes' logs next to it).

Every process it starts is stopped again on exit, Ctrl-C or SIGTERM; all traffic is on 127.0.0.1.

The modules: ``options`` (the command line), ``steps`` (progress lines, bounded steps),
``stack`` (the processes it starts, over ``ptsp_gate.embedded.harness``), ``cpu`` (CPU
accounting from /proc), ``load`` (the workload and producing it), ``scrape`` (what the service
reports about itself), ``latency`` (the decisions topic as the bench sees it), ``raw_pipe`` and
``probe_load`` (the roles it runs as child processes), ``phases`` (phases A, B and C), ``run``
(one whole run) and ``results`` (the report and the result file).
"""
