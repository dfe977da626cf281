"""authrun.Pool as a multiprocessing user writes it: the workers are authrun's (a handshake on the run key
before anything of this script is loaded in them), and a worker's exception comes back with its type."""

import authrun


def square(x):
    return x * x


def check(x):
    if x < 0:
        raise ValueError("negative: %d" % x)
    return x


if __name__ == "__main__":
    with authrun.Pool(2, timeout=30, retries=1) as pool:
        print("squares:", pool.map(square, range(10)))
        print("sum of 10,000 squares:", sum(pool.imap_unordered(square, range(10_000))))
        try:
            pool.apply(check, (-1,))
        except ValueError as e:
            print("ValueError from the worker:", e)
