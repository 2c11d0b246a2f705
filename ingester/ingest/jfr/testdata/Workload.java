import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.locks.LockSupport;

// Workload gives a JFR recording something of every kind Pyroscope converts
// from a plain JVM: CPU (ExecutionSample), allocations (in and outside TLABs,
// ObjectAllocationSample), monitor contention (JavaMonitorEnter) and parking
// (ThreadPark). Usage: java Workload.java <seconds>
public class Workload {
    static final Object LOCK = new Object();
    static volatile long sink;
    static volatile boolean stop;

    public static void main(String[] args) throws Exception {
        long seconds = args.length > 0 ? Long.parseLong(args[0]) : 3;
        List<Thread> threads = new ArrayList<>();
        threads.add(new Thread(Workload::burn, "burner"));
        threads.add(new Thread(Workload::allocate, "allocator"));
        for (int i = 0; i < 3; i++) {
            threads.add(new Thread(Workload::contend, "contender-" + i));
        }
        threads.add(new Thread(Workload::park, "parker"));
        for (Thread t : threads) {
            t.start();
        }
        Thread.sleep(seconds * 1000);
        stop = true;
        for (Thread t : threads) {
            t.join();
        }
    }

    static void burn() {
        while (!stop) {
            sink += fib(24) + primes(20000);
        }
    }

    static long fib(int n) {
        return n < 2 ? n : fib(n - 1) + fib(n - 2);
    }

    static long primes(int n) {
        long count = 0;
        for (int i = 2; i < n; i++) {
            boolean prime = true;
            for (int j = 2; (long) j * j <= i; j++) {
                if (i % j == 0) {
                    prime = false;
                    break;
                }
            }
            if (prime) {
                count++;
            }
        }
        return count;
    }

    static void allocate() {
        List<Object> keep = new ArrayList<>();
        while (!stop) {
            keep.add(smallObjects());
            keep.add(largeArray());
            if (keep.size() > 64) {
                keep.clear();
            }
        }
    }

    static Object smallObjects() {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 2000; i++) {
            sb.append(Integer.toString(i));
        }
        return sb.toString();
    }

    static Object largeArray() {
        return new long[256 * 1024]; // 2 MiB: allocated outside a TLAB
    }

    static void contend() {
        while (!stop) {
            synchronized (LOCK) {
                holdLock();
            }
        }
    }

    static void holdLock() {
        long until = System.nanoTime() + 15_000_000L;
        while (System.nanoTime() < until) {
            sink++;
        }
    }

    static void park() {
        while (!stop) {
            parkABit();
        }
    }

    static void parkABit() {
        LockSupport.parkNanos(30_000_000L);
    }
}
