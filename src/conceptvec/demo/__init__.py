"""The offline demo: a digits CNN with merged classes, its layer extracted, scanned and reported."""
