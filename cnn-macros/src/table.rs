//! The text of `summary()` and of the struct's rustdoc.

use cnn_shape::Shape;

use crate::check::{Plan, Step, StepKind};

/// The rows of `steps`, blocks under a row of their own, their branches
/// indented, then the merge and the block's activation.
fn rows(steps: &[Step], depth: usize, rows: &mut Vec<[String; 4]>) {
    let indent = "  ".repeat(depth);
    for step in steps {
        let label = |name: &str, source: &str| {
            if name == source { format!("{indent}{name}") } else { format!("{indent}{name} ({source})") }
        };
        let (branches, act, merge) = match &step.kind {
            StepKind::Op(_) => {
                let row = [
                    label(&step.name, &step.source),
                    step.output.to_string(),
                    group_digits(step.params),
                    step.arithmetic.clone(),
                ];
                rows.push(row);
                continue;
            }
            StepKind::Residual { body, shortcut, act } => {
                (std::iter::once(body).chain(shortcut).collect::<Vec<_>>(), *act, "+")
            }
            StepKind::Concat { branches, act } => (branches.iter().collect(), *act, "++"),
        };
        rows.push([label(&step.name, &step.source), String::new(), group_digits(step.params), String::new()]);
        for branch in branches {
            self::rows(branch, depth + 1, rows);
        }
        rows.push([
            format!("{indent}  {merge}"),
            step.output.to_string(),
            "0".into(),
            step.arithmetic.clone(),
        ]);
        if let Some(act) = act {
            rows.push([
                format!("{indent}  {}", act.keyword()),
                step.output.to_string(),
                "0".into(),
                String::new(),
            ]);
        }
    }
}

/// A table like Keras's `model.summary()`, with the arithmetic of each shape.
pub fn summary(name: &str, plan: &Plan) -> String {
    let mut table = vec![["layer".to_string(), "output".into(), "params".into(), "arithmetic".into()]];
    if let Some(input) = plan.input {
        table.push(["input".into(), input.to_string(), "0".into(), String::new()]);
    }
    rows(&plan.steps, 0, &mut table);
    let rows = table;
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
    fn outputs(steps: &[Step]) -> usize {
        steps.iter().fold(0usize, |sum, step| {
            let inner = match &step.kind {
                StepKind::Op(_) => 0,
                StepKind::Residual { body, shortcut, .. } => {
                    outputs(body).saturating_add(shortcut.as_deref().map_or(0, outputs))
                }
                StepKind::Concat { branches, .. } => {
                    branches.iter().fold(0usize, |s, b| s.saturating_add(outputs(b)))
                }
            };
            sum.saturating_add(step.output.len()).saturating_add(inner)
        })
    }
    let params = plan.steps.iter().fold(0usize, |sum, s| sum.saturating_add(s.params));
    let input = plan.input.map_or(0, Shape::len);
    (params, input.saturating_add(outputs(&plan.steps)))
}

/// The layer table in Markdown, for the struct's rustdoc.
pub fn markdown(plan: &Plan) -> String {
    let mut out = String::from("\n\n| layer | output | params |\n|---|---|---:|\n");
    if let Some(input) = plan.input {
        out.push_str(&format!("| input | {input} | 0 |\n"));
    }
    let mut table = Vec::new();
    rows(&plan.steps, 0, &mut table);
    for [layer, output, params, _] in table {
        // Indentation shows as non-breaking spaces in rendered Markdown.
        let depth = layer.len() - layer.trim_start().len();
        out.push_str(&format!(
            "| {}{} | {output} | {params} |\n",
            "&nbsp;".repeat(depth),
            layer.trim_start()
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
