"""s3prl upstream plugin for GenDistiller students."""
