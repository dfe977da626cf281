import hashlib

def add(a, b):
    return a + b

def greet(name, punctuation="!"):
    return f"hello {name}{punctuation}"

def digest(data):
    return hashlib.sha256(data).hexdigest()

def reverse(data):
    return data[::-1]                # bytes back, on the protocol's binary path

def check(n):
    if n < 0:
        raise ValueError(f"negative: {n}")
    return n
