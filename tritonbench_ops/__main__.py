from tritonbench_ops.harness import main

raise SystemExit(main())
