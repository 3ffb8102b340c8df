package example.ptspgate;

import com.fasterxml.jackson.core.JacksonException;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.JsonMappingException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.MapperFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.json.JsonMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import com.fasterxml.jackson.datatype.jsr310.JavaTimeModule;
import example.ptspgate.model.PermitApplicationV1Schema;
import io.cloudevents.CloudEvent;
import io.cloudevents.core.builder.CloudEventBuilder;
import io.cloudevents.core.extensions.DistributedTracingExtension;
import io.cloudevents.core.message.Encoding;
import io.cloudevents.kafka.CloudEventSerializer;
import io.cloudevents.kafka.KafkaMessageFactory;
import java.io.IOException;
import java.net.URI;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.security.SecureRandom;
import java.time.Duration;
import java.time.OffsetDateTime;
import java.time.temporal.ChronoUnit;
import java.util.HashMap;
import java.util.HexFormat;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigException;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Publishes one permit application to ptsp-gate and prints the compliance decision that answers
 * it: one JSON line on stdout, a summary on stderr. See README.md beside the pom.
 *
 * <p>Exit status: 0 a decision arrived (whatever its outcome), 1 no decision in time (or Kafka
 * failed), 2 bad arguments or a bad application file.
 */
public final class PtspGateClient {

  static final String USAGE =
      "usage: java -jar ptsp-gate-client.jar --application FILE [--event-id ID] [--source URI]"
          + " [--timeout SECONDS] [--traceparent TP]";

  static final String TYPE_APPLICATION = "id.go.ptsp.permit.application.submitted.v1";
  static final String TYPE_RENEWAL = "id.go.ptsp.permit.renewal.submitted.v1";

  // The gate is strict about the JSON types of the fields it knows ("3" is not a number), so the
  // local check is too. FAIL_ON_TRAILING_TOKENS: `{...} garbage` is not JSON.
  static final ObjectMapper JSON =
      JsonMapper.builder()
          .addModule(new JavaTimeModule())
          .disable(MapperFeature.ALLOW_COERCION_OF_SCALARS)
          .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
          .build();

  // jsonschema2pojo keeps `required` as a javadoc note only, so presence is checked here.
  // Patterns, lengths, the NPWP check digit and RENEWAL's previous_permit_number are left to the
  // gate: it is the authority on them and answers REJECTED / INVALID_EVENT.
  static final List<String> REQUIRED =
      List.of(
          "/application_id", "/action", "/submitted_at", "/region_code",
          "/permit/type", "/permit/kbli", "/permit/risk_level",
          "/employer/nib", "/employer/npwp", "/employer/name", "/employer/scale",
          "/employer/workers_declared");

  static final Pattern TRACEPARENT =
      Pattern.compile("^00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}$");

  /** An error to report on one stderr line ("error: ...") with its exit status. */
  static final class Failure extends Exception {
    final int status;

    Failure(int status, String message) {
      super(message);
      this.status = status;
    }
  }

  record Options(Path application, String eventId, URI source, Duration timeout, String traceparent) {}

  record Config(String bootstrap, String applicationsTopic, String decisionsTopic) {}

  record Received(ConsumerRecord<byte[], byte[]> record, CloudEvent event, JsonNode data) {}

  public static void main(String[] args) {
    int status;
    try {
      status = run(args);
    } catch (Failure f) {
      System.err.println("error: " + f.getMessage().replaceAll("\\s*\\R\\s*", " "));
      status = f.status;
    }
    System.out.flush();
    // Kafka's client threads must not keep the JVM alive after the answer.
    System.exit(status);
  }

  static int run(String[] args) throws Failure {
    if (args.length == 1 && (args[0].equals("--help") || args[0].equals("-h"))) {
      System.out.println(USAGE);
      return 0;
    }
    Options options = parseArgs(args);
    Config config = configFromEnvironment();
    byte[] data = readFile(options.application());
    PermitApplicationV1Schema application = parseApplication(data, options.application());

    // By default the ce_id is the digest of the bytes sent: running the client again on the same
    // file (after a timeout, say) is the same event, which the gate absorbs instead of deciding
    // it twice; a corrected file is a new event.
    String eventId = options.eventId() != null ? options.eventId() : "sha256:" + sha256(data);
    String traceparent =
        options.traceparent() != null ? options.traceparent() : newTraceparent();
    long deadline = System.nanoTime() + options.timeout().toNanos();

    KafkaConsumer<byte[], byte[]> consumer = null;
    KafkaProducer<String, CloudEvent> producer = null;
    try {
      consumer = new KafkaConsumer<>(consumerConfig(config));
      producer = new KafkaProducer<>(producerConfig(config, options.timeout()));
      // Watch the decisions topic from its current end BEFORE publishing: a decision produced
      // between sending and subscribing would otherwise be missed.
      startAtEnd(consumer, config.decisionsTopic(), deadline);

      CloudEvent event = applicationEvent(application, data, eventId, options.source(), traceparent);
      // Key = NIB: all events of one employer share a partition, so they stay in order.
      ProducerRecord<String, CloudEvent> record =
          new ProducerRecord<>(config.applicationsTopic(), application.getEmployer().getNib(), event);
      try {
        producer.send(record).get(remainingMillis(deadline), TimeUnit.MILLISECONDS);
      } catch (ExecutionException | TimeoutException e) {
        throw new Failure(1, "could not publish to " + config.applicationsTopic() + ": " + cause(e));
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new Failure(1, "interrupted while publishing");
      }

      Received decision = awaitDecision(consumer, application.getApplicationId(), deadline);
      if (decision == null) {
        throw new Failure(
            1,
            "no decision for " + application.getApplicationId() + " on " + config.decisionsTopic()
                + " within " + options.timeout().toMillis() / 1000.0 + " s (ce_id " + eventId
                + "; an event resent under a ce_id the gate already accepted is absorbed and"
                + " gets no new decision)");
      }
      report(application, eventId, traceparent, decision, config);
      return 0;
    } catch (KafkaException e) {
      // A bad setting (bootstrap address, KAFKA_CLIENT_*) is a usage error, not a Kafka failure.
      boolean badSetting = rootCause(e) instanceof ConfigException;
      throw new Failure(badSetting ? 2 : 1, "Kafka: " + cause(e));
    } finally {
      if (producer != null) {
        producer.close(Duration.ofSeconds(5));
      }
      if (consumer != null) {
        consumer.close();
      }
    }
  }

  // ---- input ---------------------------------------------------------------------------------

  static Options parseArgs(String[] args) throws Failure {
    Set<String> known = Set.of("--application", "--event-id", "--source", "--timeout", "--traceparent");
    Map<String, String> values = new HashMap<>();
    for (int i = 0; i < args.length; i++) {
      String name = args[i];
      String value = null;
      int eq = name.indexOf('=');
      if (name.startsWith("--") && eq > 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      }
      if (!known.contains(name)) {
        throw usage("unknown argument " + args[i]);
      }
      if (value == null) {
        if (i + 1 >= args.length) {
          throw usage(name + " needs a value");
        }
        value = args[++i];
      }
      values.put(name, value);
    }
    if (values.get("--application") == null) {
      throw usage("--application FILE is required");
    }
    String eventId = values.get("--event-id");
    if (eventId != null && eventId.isBlank()) {
      throw usage("--event-id must not be empty");
    }
    URI source;
    try {
      source = new URI(values.getOrDefault("--source", "urn:ptsp:example:java"));
    } catch (java.net.URISyntaxException e) {
      throw usage("--source is not a URI: " + e.getMessage());
    }
    if (source.toString().isEmpty()) {
      throw usage("--source must not be empty");
    }
    Duration timeout;
    try {
      double seconds = Double.parseDouble(values.getOrDefault("--timeout", "30"));
      if (!(seconds > 0) || Double.isInfinite(seconds)) {
        throw new NumberFormatException();
      }
      timeout = Duration.ofMillis((long) Math.ceil(seconds * 1000));
    } catch (NumberFormatException e) {
      throw usage("--timeout must be a positive number of seconds");
    }
    String traceparent = values.get("--traceparent");
    if (traceparent != null && !TRACEPARENT.matcher(traceparent).matches()) {
      throw usage("--traceparent is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)");
    }
    return new Options(Path.of(values.get("--application")), eventId, source, timeout, traceparent);
  }

  static Failure usage(String problem) {
    return new Failure(2, problem + " (" + USAGE + ")");
  }

  static Config configFromEnvironment() throws Failure {
    String bootstrap = System.getenv("KAFKA_BOOTSTRAP_SERVERS");
    if (bootstrap == null || bootstrap.isBlank()) {
      throw new Failure(2, "KAFKA_BOOTSTRAP_SERVERS is not set (host:port, comma-separated)");
    }
    return new Config(
        bootstrap,
        env("PTSP_GATE_TOPIC_APPLICATIONS", "ptsp.permit-applications.v1"),
        env("PTSP_GATE_TOPIC_DECISIONS", "compliance.permit-decisions.v1"));
  }

  static String env(String name, String fallback) {
    String value = System.getenv(name);
    return value == null || value.isBlank() ? fallback : value;
  }

  static byte[] readFile(Path path) throws Failure {
    try {
      return Files.readAllBytes(path);
    } catch (NoSuchFileException e) {
      throw new Failure(2, "cannot read " + path + ": no such file");
    } catch (IOException e) {
      throw new Failure(2, "cannot read " + path + ": " + e);
    }
  }

  static PermitApplicationV1Schema parseApplication(byte[] data, Path path) throws Failure {
    JsonNode tree;
    try {
      tree = JSON.readTree(data);
    } catch (IOException e) {
      throw new Failure(2, path + " is not JSON: " + originalMessage(e));
    }
    if (tree == null || !tree.isObject()) {
      throw new Failure(2, path + " is not a valid application: not a JSON object");
    }
    List<String> missing =
        REQUIRED.stream()
            .filter(pointer -> tree.at(pointer).isMissingNode() || tree.at(pointer).isNull())
            .map(pointer -> pointer.substring(1).replace('/', '.'))
            .collect(Collectors.toList());
    if (!missing.isEmpty()) {
      throw new Failure(2, path + " is not a valid application: missing " + String.join(", ", missing));
    }
    try {
      PermitApplicationV1Schema application = JSON.treeToValue(tree, PermitApplicationV1Schema.class);
      if (application.getApplicationId().isBlank()) {
        throw new Failure(2, path + " is not a valid application: application_id is empty");
      }
      return application;
    } catch (JsonMappingException e) {
      throw new Failure(2, path + " is not a valid application: " + at(e) + originalMessage(e));
    } catch (IOException e) {
      throw new Failure(2, path + " is not a valid application: " + originalMessage(e));
    }
  }

  // ---- publishing ----------------------------------------------------------------------------

  static CloudEvent applicationEvent(
      PermitApplicationV1Schema application, byte[] data, String eventId, URI source,
      String traceparent) {
    String type =
        application.getAction() == PermitApplicationV1Schema.Action.RENEWAL
            ? TYPE_RENEWAL
            : TYPE_APPLICATION;
    DistributedTracingExtension tracing = new DistributedTracingExtension();
    tracing.setTraceparent(traceparent);
    // The file's bytes are sent as they are, not re-serialised from the model: the gate checks
    // exactly what was submitted (fields unknown to this client included), and a resend under
    // the same ce_id is byte-identical, so the gate absorbs it instead of answering ID_CONFLICT.
    return CloudEventBuilder.v1()
        .withId(eventId)
        .withSource(source)
        .withType(type)
        .withTime(OffsetDateTime.now().truncatedTo(ChronoUnit.MILLIS))
        .withData("application/json", data)
        .withExtension(tracing)
        .build();
  }

  static String sha256(byte[] data) {
    try {
      return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(data));
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("every Java platform has SHA-256", e);
    }
  }

  /** A new W3C trace: version 00, random trace id and parent id, sampled. */
  static String newTraceparent() {
    SecureRandom random = new SecureRandom();
    byte[] traceId = new byte[16];
    byte[] parentId = new byte[8];
    random.nextBytes(traceId);
    random.nextBytes(parentId);
    return "00-" + HexFormat.of().formatHex(traceId) + "-" + HexFormat.of().formatHex(parentId) + "-01";
  }

  static Properties producerConfig(Config config, Duration timeout) {
    Properties props = clientConfig(config);
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, CloudEventSerializer.class.getName());
    props.put(CloudEventSerializer.ENCODING_CONFIG, Encoding.BINARY.name());
    // No duplicates from the producer's own retries; acknowledged only once replicated.
    props.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    // send() blocks while it fetches metadata; keep that inside --timeout too.
    props.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, String.valueOf(timeout.toMillis()));
    return props;
  }

  // ---- reading the decision ------------------------------------------------------------------

  static Properties consumerConfig(Config config) {
    Properties props = clientConfig(config);
    props.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    props.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
    // No group.id: partitions are assigned by hand and no offset is ever committed, so this
    // client takes nothing away from the PTSP's real decision consumers.
    props.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    // A mistyped topic name should fail, not create an empty topic and wait on it.
    props.put(ConsumerConfig.ALLOW_AUTO_CREATE_TOPICS_CONFIG, "false");
    return props;
  }

  static void startAtEnd(KafkaConsumer<byte[], byte[]> consumer, String topic, long deadline)
      throws Failure {
    List<PartitionInfo> partitions =
        consumer.partitionsFor(topic, Duration.ofMillis(remainingMillis(deadline)));
    if (partitions == null || partitions.isEmpty()) {
      throw new Failure(1, "decisions topic " + topic + " not found");
    }
    List<TopicPartition> assigned =
        partitions.stream().map(p -> new TopicPartition(topic, p.partition())).toList();
    consumer.assign(assigned);
    consumer.seekToEnd(assigned);
    // seekToEnd is lazy: position() resolves the end offsets now, before the event is sent.
    for (TopicPartition partition : assigned) {
      consumer.position(partition, Duration.ofMillis(remainingMillis(deadline)));
    }
  }

  /** The first decision whose subject is the application, or null at the deadline. */
  static Received awaitDecision(
      KafkaConsumer<byte[], byte[]> consumer, String applicationId, long deadline) {
    long left;
    while ((left = remainingMillis(deadline)) > 0) {
      for (ConsumerRecord<byte[], byte[]> record : consumer.poll(Duration.ofMillis(Math.min(left, 500)))) {
        String subject = header(record, "ce_subject");
        if (subject != null && !subject.equals(applicationId)) {
          continue;
        }
        Received received = read(record);
        if (received == null) {
          continue;
        }
        String id = subject != null ? subject : received.data().path("application_id").asText(null);
        if (applicationId.equals(id)) {
          return received;
        }
      }
    }
    return null;
  }

  /** The record as a CloudEvent with JSON data, or null (and a warning) if it is not one. */
  static Received read(ConsumerRecord<byte[], byte[]> record) {
    try {
      CloudEvent event = KafkaMessageFactory.createReader(record).toEvent();
      if (event.getData() == null) {
        throw new IllegalArgumentException("no data");
      }
      return new Received(record, event, JSON.readTree(event.getData().toBytes()));
    } catch (RuntimeException | IOException e) {
      // Someone else's bad record must not stop the wait for ours.
      System.err.printf(
          "warning: skipped unreadable record %s-%d@%d: %s%n",
          record.topic(), record.partition(), record.offset(), cause(e));
      return null;
    }
  }

  static void report(
      PermitApplicationV1Schema application, String eventId, String traceparent,
      Received received, Config config) throws Failure {
    Decision decision;
    try {
      decision = JSON.treeToValue(received.data(), Decision.class);
    } catch (JacksonException e) {
      throw new Failure(1, "the decision is not readable: " + originalMessage(e));
    }
    ObjectNode out = JSON.createObjectNode();
    out.put("application_id", application.getApplicationId());
    out.put("event_id", eventId);
    out.put("outcome", decision.outcome());
    out.put("decision_id", decision.decisionId());
    out.put("supersedes", decision.supersedes());
    ArrayNode codes = out.putArray("reasons");
    decision.reasons().forEach(reason -> codes.add(reason.code()));
    out.set("decision", received.data());
    out.put("decision_ce_id", received.event().getId());
    out.put("dataschema", header(received.record(), "ce_dataschema"));
    out.put("trace_id_sent", traceparent.split("-")[1]);
    String traceparentReceived = header(received.record(), "ce_traceparent");
    out.put(
        "traceparent_received",
        traceparentReceived != null ? traceparentReceived : header(received.record(), "traceparent"));
    try {
      System.out.println(JSON.writeValueAsString(out));
    } catch (JacksonException e) {
      throw new Failure(1, "cannot write the result: " + originalMessage(e));
    }

    StringBuilder summary = new StringBuilder();
    summary.append(application.getApplicationId()).append(": ").append(decision.outcome())
        .append(" (decision ").append(decision.decisionId()).append(')');
    if (decision.supersedes() != null) {
      summary.append(", replacing decision ").append(decision.supersedes());
    }
    for (Decision.Reason reason : decision.reasons()) {
      summary.append(System.lineSeparator()).append("  - ").append(reason.code());
      if (reason.effect() != null) {
        summary.append(" [").append(reason.effect()).append(']');
      }
      summary.append(": ").append(reason.message());
    }
    if ("REJECTED".equals(decision.outcome())) {
      summary.append(System.lineSeparator())
          .append("  The event was dead-lettered on ").append(config.applicationsTopic())
          .append(".dlq; correct it and send it again under a new --event-id.");
    }
    System.err.println(summary);
  }

  // ---- small helpers -------------------------------------------------------------------------

  /**
   * Settings common to both clients. Security settings pass through from the environment:
   * KAFKA_CLIENT_SECURITY_PROTOCOL=SASL_SSL becomes security.protocol=SASL_SSL, and likewise
   * KAFKA_CLIENT_SASL_MECHANISM, KAFKA_CLIENT_SASL_JAAS_CONFIG, KAFKA_CLIENT_SSL_TRUSTSTORE_LOCATION,
   * ... (any Kafka client property: drop the prefix, lower-case, '_' becomes '.').
   */
  static Properties clientConfig(Config config) {
    Properties props = new Properties();
    System.getenv().forEach((name, value) -> {
      if (name.startsWith("KAFKA_CLIENT_")) {
        props.put(name.substring("KAFKA_CLIENT_".length()).toLowerCase(Locale.ROOT).replace('_', '.'), value);
      }
    });
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, config.bootstrap());
    props.putIfAbsent(ProducerConfig.CLIENT_ID_CONFIG, "ptsp-gate-client-example");
    return props;
  }

  static String header(ConsumerRecord<?, ?> record, String name) {
    Header header = record.headers().lastHeader(name);
    return header == null || header.value() == null
        ? null
        : new String(header.value(), StandardCharsets.UTF_8);
  }

  static long remainingMillis(long deadline) {
    return Math.max(0, TimeUnit.NANOSECONDS.toMillis(deadline - System.nanoTime()));
  }

  static String at(JsonMappingException e) {
    String path =
        e.getPath().stream()
            .map(ref -> ref.getFieldName() != null ? ref.getFieldName() : "[" + ref.getIndex() + "]")
            .collect(Collectors.joining("."));
    return path.isEmpty() ? "" : path + ": ";
  }

  static String originalMessage(Exception e) {
    return e instanceof JacksonException j ? j.getOriginalMessage() : String.valueOf(e.getMessage());
  }

  static Throwable rootCause(Throwable e) {
    Throwable root = e;
    while (root.getCause() != null && root.getCause() != root) {
      root = root.getCause();
    }
    return root;
  }

  static String cause(Throwable e) {
    Throwable root = rootCause(e);
    return root.getClass().getSimpleName() + (root.getMessage() != null ? ": " + root.getMessage() : "");
  }
}
