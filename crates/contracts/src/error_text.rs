//! Error messages with their causes.
//!
//! Transport errors say little at the top ("error sending request"); the reason a user can act
//! on ("Connection refused", "certificate has expired", "dns error") sits in the source chain.
//! Every message that reports such an error to a person goes through [`with_causes`].

use std::error::Error;

/// `e`'s message followed by each cause's, as `a: b: c`. A cause whose text the message already
/// holds is skipped: many wrappers repeat their source in their own message.
pub fn with_causes(e: &(dyn Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !part.is_empty() && !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer {
        text: &'static str,
        source: Option<Box<Layer>>,
    }

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.text)
        }
    }

    impl Error for Layer {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|s| s as &(dyn Error + 'static))
        }
    }

    fn chain(texts: &[&'static str]) -> Layer {
        let mut layer: Option<Box<Layer>> = None;
        for text in texts.iter().rev() {
            layer = Some(Box::new(Layer {
                text,
                source: layer,
            }));
        }
        *layer.expect("at least one layer")
    }

    #[test]
    fn the_causes_follow_the_message() {
        let e = chain(&[
            "error sending request",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]);
        assert_eq!(
            with_causes(&e),
            "error sending request: client error (Connect): tcp connect error: \
             Connection refused (os error 111)"
        );
    }

    #[test]
    fn causes_already_in_the_message_and_empty_ones_are_not_repeated() {
        let e = chain(&["cannot open: disk full", "disk full", "", "errno 28"]);
        assert_eq!(with_causes(&e), "cannot open: disk full: errno 28");
        assert_eq!(with_causes(&chain(&["alone"])), "alone");
    }
}
