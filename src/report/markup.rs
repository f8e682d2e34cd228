//! Text made safe inside XML and HTML documents (`junit.xml`, `report.html`):
//! markup characters escaped, and characters XML forbids replaced.

/// A hand-written escaper rather than an XML or HTML crate: the documents
/// are a few fixed elements, and escaping is the only part that needs care (witness
/// text carries what a stack sent: quotes, angle brackets, control bytes).
pub fn attribute(text: &str) -> String {
    escape(text, true)
}

pub fn text_node(text: &str) -> String {
    escape(text, false)
}

/// Escapes markup characters; in an attribute also quotes, tabs and line
/// breaks (a parser would fold those to spaces otherwise); text keeps its
/// quotes, so witnesses' JSON stays readable in the raw file. Characters XML 1.0 does
/// not allow even as references (most C0 controls, U+FFFE, U+FFFF) become
/// U+FFFD, so that no stack's odd byte makes the document invalid.
fn escape(text: &str, in_attribute: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if in_attribute => out.push_str("&quot;"),
            '\'' if in_attribute => out.push_str("&apos;"),
            '\r' => out.push_str("&#13;"),
            '\n' if in_attribute => out.push_str("&#10;"),
            '\t' if in_attribute => out.push_str("&#9;"),
            '\n' | '\t' => out.push(c),
            '\u{0}'..='\u{1f}' | '\u{fffe}' | '\u{ffff}' => out.push('\u{fffd}'),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_survive_in_attributes_and_text() {
        assert_eq!(attribute("a\nb\tc\r"), "a&#10;b&#9;c&#13;");
        assert_eq!(text_node("a\nb\tc\r"), "a\nb\tc&#13;");
    }

    #[test]
    fn characters_xml_forbids_are_replaced() {
        assert_eq!(attribute("nul\u{0} bell\u{7} esc\u{1b} \u{ffff}"), "nul\u{fffd} bell\u{fffd} esc\u{fffd} \u{fffd}");
        assert_eq!(text_node("ok: é → ✓ 😀"), "ok: é → ✓ 😀", "other Unicode is kept");
    }

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(attribute(r#"a<b>&"c"'d'"#), "a&lt;b&gt;&amp;&quot;c&quot;&apos;d&apos;");
        assert_eq!(text_node("x < y && z > 0"), "x &lt; y &amp;&amp; z &gt; 0");
        assert_eq!(text_node("]]>"), "]]&gt;", "no CDATA end sneaks through");
        assert_eq!(text_node(r#"{"event":"refunded"}"#), r#"{"event":"refunded"}"#, "quotes need no escape in text");
    }
}
