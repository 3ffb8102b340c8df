package example.ptspgate;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import java.util.List;
import java.util.Map;

/**
 * The fields of a compliance decision (schemas/compliance-decision.v1.schema.json) this client
 * uses.
 *
 * <p>Hand-written rather than generated, for three reasons. The schema writes nullable fields
 * ({@code supersedes}, {@code nib}, {@code action}, ...) as {@code anyOf: [X, null]}, which
 * jsonschema2pojo turns into {@code Object}. Its enums would be Java enums that throw on a value
 * they do not know, yet v1 grows additively ({@code OFFICER_OVERRIDE} was added to it). And the
 * schema is closed ({@code additionalProperties: false}), so a generated class would refuse a
 * field added later. A reader of decisions should be tolerant: strings, and unknown fields
 * ignored.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public record Decision(
    @JsonProperty("decision_id") String decisionId,
    @JsonProperty("application_id") String applicationId,
    @JsonProperty("outcome") String outcome,
    @JsonProperty("supersedes") String supersedes,
    @JsonProperty("reasons") List<Reason> reasons) {

  public Decision {
    reasons = reasons == null ? List.of() : reasons;
  }

  @JsonIgnoreProperties(ignoreUnknown = true)
  public record Reason(
      @JsonProperty("code") String code,
      @JsonProperty("message") String message,
      @JsonProperty("details") Map<String, Object> details) {

    /** {@code block}, {@code pending} or {@code advisory}. */
    public String effect() {
      Object effect = details == null ? null : details.get("effect");
      return effect == null ? null : effect.toString();
    }
  }
}
