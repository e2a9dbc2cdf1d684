package io.sbexportd;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.Set;

/**
 * The outputs of one policy evaluation, by the export convention's names: {@code action}
 * (exactly SB2's {@code predict(deterministic=True)}), then where they apply {@code probs}
 * (or {@code probs_<i>} for MultiDiscrete), {@code mean}, {@code std}, {@code values},
 * {@code q_values}, {@code state}. All arrays are batch first.
 */
public final class Prediction {
    private final Map<String, NdArray> outputs;

    public Prediction(Map<String, NdArray> outputs) {
        this.outputs = Collections.unmodifiableMap(new LinkedHashMap<>(outputs));
    }

    /** Every output, in the convention's order. */
    public Map<String, NdArray> outputs() {
        return outputs;
    }

    public Set<String> names() {
        return outputs.keySet();
    }

    /** An output by name, or null when this policy has none of that name. */
    public NdArray get(String name) {
        return outputs.get(name);
    }

    /** int64 for Discrete / MultiDiscrete, float32 for Box and MultiBinary. */
    public NdArray action() {
        NdArray a = outputs.get("action");
        return a != null ? a : outputs.get("actions");
    }

    public NdArray probs() {
        return outputs.get("probs");
    }

    /** MultiDiscrete: the softmax of sub-action {@code i}. */
    public NdArray probs(int i) {
        return outputs.get("probs_" + i);
    }

    public NdArray mean() {
        return outputs.get("mean");
    }

    public NdArray std() {
        return outputs.get("std");
    }

    public NdArray values() {
        return outputs.get("values");
    }

    public NdArray qValues() {
        return outputs.get("q_values");
    }

    /** Recurrent policies: the state to feed back on the next step. */
    public NdArray state() {
        return outputs.get("state");
    }

    @Override
    public String toString() {
        StringBuilder s = new StringBuilder("Prediction{");
        outputs.forEach((k, v) -> s.append("\n  ").append(k).append(": ").append(v));
        return s.append("\n}").toString();
    }
}
