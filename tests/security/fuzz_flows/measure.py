"""A script step as flow authors write them: the body as text, a header, a new body."""


def process(message, pd):
    text = message.get_body(str)
    message.set_header("X-Length", str(len(text)))
    message.set_body(f"{len(text)} characters")
