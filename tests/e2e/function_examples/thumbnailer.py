"""Turns an image (the input bytes) into a 64x64 PNG thumbnail."""
import io

from PIL import Image
from pulsar import Function


class Thumbnailer(Function):
    def process(self, input, context):
        image = Image.open(io.BytesIO(input))
        image.thumbnail((64, 64))
        out = io.BytesIO()
        image.save(out, format="PNG")
        return out.getvalue()
