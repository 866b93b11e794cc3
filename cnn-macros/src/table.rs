//! The text of `summary()` and of the struct's rustdoc.

use cnn_shape::Shape;

use crate::check::Plan;

/// A table like Keras's `model.summary()`, with the arithmetic of each shape.
pub fn summary(name: &str, plan: &Plan) -> String {
    let mut rows = vec![["layer".to_string(), "output".into(), "params".into(), "arithmetic".into()]];
    if let Some(input) = plan.input {
        rows.push(["input".into(), input.to_string(), "0".into(), String::new()]);
    }
    for step in &plan.steps {
        let layer = if step.name == step.source {
            step.name.clone()
        } else {
            format!("{} ({})", step.name, step.source)
        };
        rows.push([layer, step.output.to_string(), group_digits(step.params), step.arithmetic.clone()]);
    }
    let widths: Vec<usize> =
        (0..4).map(|col| rows.iter().map(|r| r[col].chars().count()).max().unwrap_or(0)).collect();
    let line = |r: &[String; 4]| {
        let text = format!(
            "{:<a$}  {:<b$}  {:>c$}  {}",
            r[0],
            r[1],
            r[2],
            r[3],
            a = widths[0],
            b = widths[1],
            c = widths[2]
        );
        text.trim_end().to_string()
    };
    let rule_len = widths.iter().sum::<usize>() + 6;
    let mut out = format!("{name}\n{}\n{}\n", line(&rows[0]), "-".repeat(rule_len));
    for row in &rows[1..] {
        out.push_str(&line(row));
        out.push('\n');
    }
    let (params, activations) = totals(plan);
    out.push_str(&"=".repeat(rule_len));
    out.push_str(&format!(
        "\nparameters: {} ({} bytes as f32)\nactivations: {} bytes per image (input and every layer's output, f32)\n",
        group_digits(params),
        group_digits(params.saturating_mul(4)),
        group_digits(activations.saturating_mul(4)),
    ));
    out
}

/// Trainable parameters and the values of all activations of one image.
pub fn totals(plan: &Plan) -> (usize, usize) {
    let params = plan.steps.iter().fold(0usize, |sum, s| sum.saturating_add(s.params));
    let input = plan.input.map_or(0, Shape::len);
    let activations = plan.steps.iter().fold(input, |sum, s| sum.saturating_add(s.output.len()));
    (params, activations)
}

/// The layer table in Markdown, for the struct's rustdoc.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::from("\n\n| layer | source | output | params |\n|---|---|---|---:|\n");
    if let Some(input) = plan.input {
        out.push_str(&format!("| input | | {input} | 0 |\n"));
    }
    for step in &plan.steps {
        out.push_str(&format!(
            "| {} | `{}` | {} | {} |\n",
            step.name,
            step.source,
            step.output,
            group_digits(step.params)
        ));
    }
    out.push_str(&format!("\nParameters: {}.", group_digits(totals(plan).0)));
    out
}

/// `1234567` as `1,234,567`.
fn group_digits(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}
