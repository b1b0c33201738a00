"""The Gradio demo: request handling, the UI, serving limits, the pipeline diagram."""
